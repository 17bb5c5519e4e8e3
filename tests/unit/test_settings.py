from __future__ import annotations

from pathlib import Path

import pytest
from loopline.settings import Settings, SettingsError

pytestmark = pytest.mark.unit


def test_defaults_run_locally_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert s.store_root == (tmp_path / "store").as_uri()
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert s.mlflow_artifact_root.startswith("file://")


def test_environment_overrides_with_prefix(tmp_path: Path) -> None:
    env = {
        "LOOPLINE_HOME": str(tmp_path),
        "LOOPLINE_STORE_ROOT": "s3://bucket/loopline",
        "LOOPLINE_TRAIN_WINDOW_DAYS": "90",
        "LOOPLINE_MODEL_NAME": "m",
        "UNRELATED": "x",
    }
    s = Settings.from_env(env)
    assert (s.store_root, s.train_window_days, s.model_name, s.home) == ("s3://bucket/loopline", 90, "m", tmp_path)
    assert Settings.from_env(env, model_name="other").model_name == "other"


def test_bad_values_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"LOOPLINE_SEED.*int"):
        Settings.from_env({"LOOPLINE_SEED": "forty-two", "LOOPLINE_HOME": str(tmp_path)})
    with pytest.raises(SettingsError, match="LOOPLINE_VALIDATION_DAYS"):
        Settings(home=tmp_path, train_window_days=7, validation_days=7)


def test_as_env_round_trips(tmp_path: Path) -> None:
    s = Settings(home=tmp_path, seed=7)
    assert Settings.from_env(s.as_env()) == s
