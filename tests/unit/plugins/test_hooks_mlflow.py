"""MLflowHook: connection → tracking URI and credentials, fallback to settings, no I/O at construction."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from loopline_airflow.hooks.mlflow import MLflowHook

pytestmark = pytest.mark.unit


def conn_env(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "mlflow", **fields}))


def test_construction_reads_nothing(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("connection looked up at construction")

    monkeypatch.setattr(MLflowHook, "get_connection", classmethod(boom))
    hook = MLflowHook("whatever")
    assert hook.mlflow_conn_id == "whatever"


@pytest.mark.parametrize(
    ("fields", "uri"),
    [
        ({"host": "http://mlflow:5000"}, "http://mlflow:5000"),
        ({"host": "mlflow", "port": 5000}, "http://mlflow:5000"),
        ({"host": "mlflow", "port": 443, "schema": "ml", "extra": {"scheme": "https"}}, "https://mlflow:443/ml"),
        ({"host": "ignored", "extra": {"tracking_uri": "http://x:1"}}, "http://x:1"),
    ],
)
def test_tracking_uri_from_connection(monkeypatch, fields, uri):
    conn_env(monkeypatch, "mlf", **fields)
    assert MLflowHook("mlf").get_tracking_uri() == uri


AUTH_VARS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


@pytest.fixture
def sent(monkeypatch) -> list[dict[str, str]]:
    """The headers of every HTTP request MLflow sends (answered with an empty 200, nothing on the network)."""
    import requests
    from mlflow.utils import rest_utils

    for var in AUTH_VARS:
        monkeypatch.delenv(var, raising=False)
    headers: list[dict[str, str]] = []

    def fake(method, url, *args, **kwargs):
        headers.append(dict(kwargs.get("headers") or {}))
        resp = requests.Response()
        resp.status_code, resp._content, resp.url = 200, b"{}", url
        return resp

    monkeypatch.setattr(rest_utils, "_get_http_response_with_retries", fake)
    return headers


def _basic(login: str, password: str) -> str:
    return "Basic " + base64.standard_b64encode(f"{login}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("fields", "authorization"),
    [
        ({"login": "ann", "password": "pw:with@odd/chars"}, _basic("ann", "pw:with@odd/chars")),
        ({"password": "s3cr3t-token"}, "Bearer s3cr3t-token"),
        ({"extra": {"token": "tok-1"}}, "Bearer tok-1"),
    ],
)
def test_client_sends_the_connections_credentials_and_exports_none(monkeypatch, sent, fields, authorization):
    conn_env(monkeypatch, "auth", host="http://m:5000", **fields)
    client = MLflowHook("auth").get_conn()
    assert client.tracking_uri == "http://m:5000"
    client.search_registered_models(max_results=1)
    assert sent and sent[-1]["Authorization"] == authorization
    assert not [v for v in AUTH_VARS if v in os.environ]
    # Outside the client's calls, MLflow's requests carry nothing of the connection.
    from mlflow.tracking.request_header.registry import resolve_request_headers

    assert "Authorization" not in resolve_request_headers()
    from mlflow.tracking import MlflowClient

    MlflowClient("http://m:5000").search_registered_models(max_results=1)
    assert "Authorization" not in sent[-1]


def test_credentials_block_reaches_module_functions_and_threads_but_not_subprocesses(monkeypatch, sent):
    conn_env(monkeypatch, "basic", host="http://m:5000", login="ann", password="pw-12345")
    hook = MLflowHook("basic")
    from concurrent.futures import ThreadPoolExecutor

    from mlflow.tracking.request_header.registry import resolve_request_headers

    with hook.credentials():
        assert resolve_request_headers()["Authorization"] == _basic("ann", "pw-12345")
        # MLflow downloads artifacts in a thread pool: its threads see the credentials too.
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(resolve_request_headers).result()["Authorization"] == _basic("ann", "pw-12345")
        # A subprocess inherits nothing of it (but the test's own connection variable, set above).
        probe = "import os; print({k: v for k, v in os.environ.items() if not k.startswith('AIRFLOW_CONN_')})"
        child = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        assert "pw-12345" not in child and not [v for v in AUTH_VARS if v in child]
    assert "Authorization" not in resolve_request_headers()
    # Registered once, however many hooks and blocks: a second provider would send the header twice.
    from loopline_airflow.hooks.mlflow import _ConnectionHeaderProvider
    from mlflow.tracking.request_header.registry import _request_header_provider_registry

    with MLflowHook("basic").credentials():
        pass
    assert sum(isinstance(p, _ConnectionHeaderProvider) for p in _request_header_provider_registry) == 1


def test_credentials_block_without_credentials_changes_nothing(monkeypatch, sent):
    conn_env(monkeypatch, "open", host="http://m:5000")
    from mlflow.tracking.request_header.registry import resolve_request_headers

    with MLflowHook("open").credentials():
        assert "Authorization" not in resolve_request_headers()
    client = MLflowHook("open").get_conn()
    client.search_registered_models(max_results=1)
    assert "Authorization" not in sent[-1]


def test_log_masks_a_password_in_the_tracking_uri(monkeypatch, capsys):
    monkeypatch.setenv("LOOPLINE_MLFLOW_TRACKING_URI", "http://u:hunter2@from-settings:5000")
    assert MLflowHook("not_defined_anywhere").get_tracking_uri() == "http://u:hunter2@from-settings:5000"
    logged = capsys.readouterr().out  # Airflow's structlog writes the hook's log to stdout here
    assert "hunter2" not in logged and "http://u:***@from-settings:5000" in logged


def test_falls_back_to_settings_without_connection(monkeypatch):
    monkeypatch.setenv("LOOPLINE_MLFLOW_TRACKING_URI", "http://from-settings:5000")
    hook = MLflowHook("not_defined_anywhere")
    assert hook.get_tracking_uri() == "http://from-settings:5000"
    assert hook.settings().mlflow_tracking_uri == "http://from-settings:5000"
    assert hook.registry("m").name == "m"


def test_connection_without_host_says_what_to_set(monkeypatch):
    conn_env(monkeypatch, "nohost", port=5000)
    with pytest.raises(ValueError, match="has no host"):
        MLflowHook("nohost").get_tracking_uri()
