"""MLflow client errors: an unreachable tracking server becomes one clear error; others pass untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopline.settings import Settings
from loopline.tracking import TrackingServerUnavailableError, client, tracking_server_errors
from loopline_dev.stack import free_port

pytestmark = pytest.mark.unit


def test_unreachable_server_names_the_server_the_step_and_what_is_unchanged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(home=tmp_path, mlflow_tracking_uri=uri)
    with pytest.raises(TrackingServerUnavailableError) as err, \
            tracking_server_errors(settings, "training the challenger", "The champion is unchanged."):
        client(settings).search_registered_models()
    text = str(err.value)
    assert f"MLflow tracking server {uri} did not answer while training the challenger" in text
    assert "The champion is unchanged." in text and "clear the task to retry" in text


def test_other_errors_pass_through(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad window"), \
            tracking_server_errors(Settings(home=tmp_path), "training", "Nothing changed."):
        raise ValueError("bad window")
