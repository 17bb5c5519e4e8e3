"""MLflowHook: connection → tracking URI and credentials, fallback to settings, no I/O at construction."""

from __future__ import annotations

import json

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


def test_token_and_basic_auth(monkeypatch):
    for var in ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    conn_env(monkeypatch, "tok", host="http://m:5000", password="s3cr3t-token")
    client = MLflowHook("tok").get_conn()
    assert client.tracking_uri == "http://m:5000"
    import os

    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "s3cr3t-token"
    conn_env(monkeypatch, "basic", host="http://m:5000", login="ann", password="pw-12345")
    MLflowHook("basic").get_conn()
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "ann"


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
