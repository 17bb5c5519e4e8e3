"""tracking.load_model: pinned versions are loaded once per process; aliases never come from the cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from loopline import tracking
from loopline.project import Project, project_names
from loopline.settings import Settings
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit


class Registry:
    """Just enough of MlflowClient: version -> source run, and which URIs were downloaded."""

    def __init__(self) -> None:
        self.runs = {"3": "run-a", "4": "run-b"}
        self.loads: list[str] = []

    def get_model_version(self, name: str, version: str) -> Any:
        return SimpleNamespace(name=name, version=version, run_id=self.runs[version])

    def load(self, uri: str) -> object:
        self.loads.append(uri)
        return object()  # a new object per download: identity tells a cache hit from a load


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    reg = Registry()
    tracking.clear_model_cache()
    monkeypatch.setattr(tracking, "point", lambda settings: None)
    monkeypatch.setattr(tracking, "client", lambda settings: reg)
    # The one download-check-and-load step every load goes through (tests/unit/test_model_safety.py tests it).
    monkeypatch.setattr(tracking, "_load_reviewed_skops", lambda uri, settings: reg.load(uri))
    yield reg
    tracking.clear_model_cache()


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, mlflow_tracking_uri="http://127.0.0.1:1", model_name="m")


def test_same_version_same_object_new_version_new_object(registry: Registry, cfg: Settings) -> None:
    a = tracking.load_model("models:/m/3", cfg)
    assert tracking.load_model("models:/m/3", cfg) is a
    b = tracking.load_model("models:/m/4", cfg)
    assert b is not a
    assert tracking.load_model("models:/m/3", cfg) is a
    assert registry.loads == ["models:/m/3", "models:/m/4"]


def test_alias_uris_are_never_cached(registry: Registry, cfg: Settings) -> None:
    first = tracking.load_model("models:/m@champion", cfg)
    second = tracking.load_model("models:/m@champion", cfg)
    assert first is not second
    assert registry.loads == ["models:/m@champion", "models:/m@champion"]


def test_a_version_backed_by_another_run_is_loaded_again(registry: Registry, cfg: Settings) -> None:
    a = tracking.load_model("models:/m/3", cfg)
    registry.runs["3"] = "run-c"  # the registered model was deleted and registered again
    assert tracking.load_model("models:/m/3", cfg) is not a


def test_another_tracking_server_is_another_key(registry: Registry, cfg: Settings, tmp_path: Path) -> None:
    a = tracking.load_model("models:/m/3", cfg)
    other = Settings(home=tmp_path, mlflow_tracking_uri="http://127.0.0.1:2", model_name="m")
    assert tracking.load_model("models:/m/3", other) is not a


def test_least_recently_used_versions_are_evicted(registry: Registry, cfg: Settings) -> None:
    registry.runs.update({str(v): f"run-{v}" for v in range(10, 10 + tracking.MODEL_CACHE_SIZE + 1)})
    first = tracking.load_model("models:/m/10", cfg)
    for v in range(11, 10 + tracking.MODEL_CACHE_SIZE + 1):
        tracking.load_model(f"models:/m/{v}", cfg)
    assert tracking.load_model("models:/m/10", cfg) is not first


def test_a_version_this_process_logged_is_served_without_a_download(
        bikes: Project, bikes_store: PartitionStore, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """`loopline run`'s lane trains, then gates and scores the same version: the fitted object is kept, and it
    predicts exactly what the artifact another process downloads predicts."""
    from loopline import steps
    from loopline.tasktypes import task_type
    from loopline.training import TrainingWindow, load_window_of, model_frame

    tracking.clear_model_cache()
    cfg = steps.model_settings(settings, bikes, "late_return")
    reg = steps.train_model(bikes, "late_return", bikes_store, settings, "2022-04-05", window_days=28,
                            validation_days=7)

    def download(uri: str, _settings: Settings) -> object:
        raise AssertionError(f"{uri} was downloaded")

    with monkeypatch.context() as patched:
        patched.setattr(tracking, "_load_reviewed_skops", download)
        kept = tracking.load_model(reg.model_uri, cfg)
    tracking.clear_model_cache()  # as in another process: downloaded, checked, rebuilt
    loaded = tracking.load_model(reg.model_uri, cfg)
    assert loaded is not kept
    inputs = steps.model_inputs(bikes, "late_return")
    frame = load_window_of(bikes_store, project_names(bikes).features_dataset, "2",
                           TrainingWindow.ending("2022-04-05", 28, 7))
    x = model_frame(frame, inputs.columns, inputs.categorical)
    task = task_type(inputs.task)
    assert len(x) > 100 and np.array_equal(task.predict(kept, x), task.predict(loaded, x))


def test_a_logged_models_files_are_downloaded_once_per_machine(
        bikes: Project, bikes_store: PartitionStore, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scoring task loads its champion in a new process: the files of a registered version are kept under
    LOOPLINE_HOME, and a kept copy goes through the same checks as a download (a broken one is refused)."""
    from loopline import steps

    cfg = steps.model_settings(settings, bikes, "late_return")
    reg = steps.train_model(bikes, "late_return", bikes_store, settings, "2022-04-05", window_days=28,
                            validation_days=7)
    downloads: list[str] = []
    real = tracking._download

    def counting(uri: str, dst: Path, s: Settings) -> Path:
        downloads.append(uri.rsplit("/", 1)[-1])
        return real(uri, dst, s)

    monkeypatch.setattr(tracking, "_download", counting)
    tracking.clear_model_cache()  # as in a new process
    first = tracking.load_model(f"models:/{reg.name}/{reg.version}", cfg)
    assert sorted(downloads) == ["MLmodel", "model.skops"]
    tracking.clear_model_cache()
    second = tracking.load_model(f"models:/{reg.name}/{reg.version}", cfg)
    assert sorted(downloads) == ["MLmodel", "model.skops"]  # nothing downloaded the second time
    assert second is not first and type(second) is type(first)

    kept = [f for f in tracking.artifact_cache_dir(cfg).iterdir() if f.name.endswith("model.skops")]
    assert len(kept) == 1
    kept[0].write_bytes(b"not a zip file")  # a kept copy is checked like a download
    tracking.clear_model_cache()
    with pytest.raises(tracking.UnsafeModelError, match="not a readable skops file"):
        tracking.load_model(f"models:/{reg.name}/{reg.version}", cfg)
    assert sorted(downloads) == ["MLmodel", "model.skops"]


def test_a_runs_reference_profile_is_downloaded_once_per_machine(
        bikes: Project, bikes_store: PartitionStore, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline import steps

    cfg = steps.model_settings(settings, bikes, "late_return")
    reg = steps.train_model(bikes, "late_return", bikes_store, settings, "2022-04-05", window_days=28,
                            validation_days=7)
    downloads: list[str] = []
    real = tracking._download
    monkeypatch.setattr(tracking, "_download",
                        lambda uri, dst, s: (downloads.append(uri), real(uri, dst, s))[1])
    first = tracking.load_reference_profile(cfg, reg.version)
    second = tracking.load_reference_profile(cfg, reg.version)
    assert len(downloads) == 1 and downloads[0].endswith(tracking.REFERENCE_PROFILE_ARTIFACT)
    assert first.to_json() == second.to_json() and first.features


def test_the_artifact_cache_keeps_the_newest_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Settings(home=tmp_path, mlflow_tracking_uri="http://127.0.0.1:1", model_name="m")

    def fake_download(uri: str, dst: Path, s: Settings) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        out = dst / uri.rsplit("/", 1)[-1]
        out.write_text(uri)
        return out

    monkeypatch.setattr(tracking, "_download", fake_download)
    monkeypatch.setattr(tracking, "ARTIFACT_CACHE_FILES", 3)
    paths = [tracking._fetch(f"runs:/r{i}/profile.json", cfg) for i in range(5)]
    assert [p.read_text() for p in paths[2:]] == [f"runs:/r{i}/profile.json" for i in range(2, 5)]
    assert not paths[0].exists() and not paths[1].exists()
    assert not [f for f in tracking.artifact_cache_dir(cfg).iterdir() if f.name.startswith(".fetch-")]
