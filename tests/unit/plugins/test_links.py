"""Operator extra links: the exact URL each link stores for a task instance, from the task's XCom."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

pytestmark = pytest.mark.unit


def key(dag_id: str, task_id: str, run_id: str = "manual__2024-05-03") -> Any:
    return SimpleNamespace(dag_id=dag_id, task_id=task_id, run_id=run_id, map_index=-1, try_number=1)


@pytest.fixture
def xcom(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str, str, str], Any]:
    """XCom as the worker's XCom backend answers it, keyed by (dag_id, task_id, run_id, key)."""
    from airflow.sdk.execution_time.xcom import XCom

    values: dict[tuple[str, str, str, str], Any] = {}

    def get_one(cls: Any, *, key: str, dag_id: str, task_id: str, run_id: str, map_index: int | None = None,
                include_prior_dates: bool = False) -> Any:
        assert map_index == -1
        return values.get((dag_id, task_id, run_id, key))

    monkeypatch.setattr(XCom, "get_one", classmethod(get_one))
    return values


@pytest.fixture
def mlflow_conn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps(
        {"conn_type": "mlflow", "host": "http://mlflow.internal:5000", "login": "ann", "password": "s3cret-pw"}))


@pytest.mark.parametrize(("uri", "ui"), [
    ("http://mlflow:5000", "http://mlflow:5000"),
    ("https://ann:s3cret@mlflow.example.com/prefix/?token=abc#x", "https://mlflow.example.com/prefix"),
    ("http://[::1]:5000/", "http://[::1]:5000"),
    ("sqlite:////tmp/mlflow.db", None),
    ("file:///tmp/mlruns", None),
    ("/tmp/mlruns", None),
])
def test_mlflow_ui_url_keeps_no_credentials(uri: str, ui: str | None) -> None:
    from loopline_airflow.links import mlflow_ui_url

    assert mlflow_ui_url(uri) == ui


def test_train_task_links_to_its_run_and_model_version(xcom, mlflow_conn) -> None:
    from loopline_airflow.links import MLflowModelVersionLink, MLflowRunLink

    ti = key("bikes.duration.retrain", "train_challenger")
    xcom[(ti.dag_id, ti.task_id, ti.run_id, "return_value")] = {
        "name": "bikes.duration", "version": "3", "run_id": "9f1c2e", "model_uri": "models:/bikes.duration/3"}
    operator = SimpleNamespace()
    assert MLflowRunLink().get_link(operator, ti_key=ti) == "http://mlflow.internal:5000/#/runs/9f1c2e"
    assert (MLflowModelVersionLink().get_link(operator, ti_key=ti)
            == "http://mlflow.internal:5000/#/models/bikes.duration/versions/3")
    assert MLflowRunLink().xcom_key == "_link_MLflowRunLink"


def test_promotion_links_to_the_candidate_and_rollback_to_the_new_champion(xcom, mlflow_conn) -> None:
    from loopline_airflow.links import MLflowModelVersionLink, MLflowRunLink

    promote = key("bikes.duration.retrain", "promote")
    xcom[(promote.dag_id, promote.task_id, promote.run_id, "return_value")] = {
        "action": "reject", "model_name": "bikes.duration", "candidate_version": "4", "champion_version": "3",
        "candidate_run_id": "ab/12"}
    assert MLflowRunLink().get_link(None, ti_key=promote) == "http://mlflow.internal:5000/#/runs/ab%2F12"
    assert (MLflowModelVersionLink().get_link(None, ti_key=promote)
            == "http://mlflow.internal:5000/#/models/bikes.duration/versions/4")
    rollback = key("bikes.duration.rollback", "rollback")
    xcom[(rollback.dag_id, rollback.task_id, rollback.run_id, "return_value")] = {
        "action": "rollback", "version": "2", "previous": "3"}
    operator = SimpleNamespace(model_name="bikes.duration", mlflow_conn_id="mlflow_default")
    assert (MLflowModelVersionLink().get_link(operator, ti_key=rollback)
            == "http://mlflow.internal:5000/#/models/bikes.duration/versions/2")


def test_no_result_or_no_mlflow_server_gives_no_link(xcom, monkeypatch) -> None:
    from loopline_airflow.links import MLflowModelVersionLink, MLflowRunLink

    failed = key("bikes.duration.retrain", "train_challenger")
    monkeypatch.setenv("LOOPLINE_MLFLOW_TRACKING_URI", "http://from-settings:5000")
    monkeypatch.delenv("AIRFLOW_CONN_MLFLOW_DEFAULT", raising=False)
    assert MLflowRunLink().get_link(None, ti_key=failed) == ""  # it failed before returning
    xcom[(failed.dag_id, failed.task_id, failed.run_id, "return_value")] = {"name": "m", "version": "1",
                                                                            "run_id": "r"}
    assert MLflowRunLink().get_link(None, ti_key=failed) == "http://from-settings:5000/#/runs/r"
    monkeypatch.setenv("LOOPLINE_MLFLOW_TRACKING_URI", "sqlite:////tmp/mlflow.db")
    assert MLflowModelVersionLink().get_link(None, ti_key=failed) == ""  # a local registry has no UI


def test_drift_task_links_to_the_newest_report_it_wrote(xcom, monkeypatch) -> None:
    from loopline_airflow.links import DriftReportLink

    ti = key("bikes.duration.drift", "check_drift")
    xcom[(ti.dag_id, ti.task_id, ti.run_id, "return_value")] = {
        "reports": [{"ds": "2024-05-04", "drifted": True}, {"ds": "2024-05-03", "drifted": False}],
        "drifted_days": ["2024-05-04"], "skipped": {}}
    assert DriftReportLink().get_link(None, ti_key=ti) == "/loopline/reports/bikes/duration/2024-05-04.html"
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/af/")
    assert (DriftReportLink().get_link(None, ti_key=ti)
            == "https://airflow.example.com/af/loopline/reports/bikes/duration/2024-05-04.html")
    other = key("some_other_dag", "check_drift")
    xcom[(other.dag_id, other.task_id, other.run_id, "return_value")] = {"reports": [{"ds": "2024-05-04"}]}
    assert DriftReportLink().get_link(None, ti_key=other) == ""  # not a Loopline DAG id


def test_features_task_links_to_its_days_validation_result_even_when_it_failed(xcom) -> None:
    from loopline_airflow.links import ValidationResultLink

    ok = key("bikes.features", "build_features", "scheduled__2024-05-03")
    xcom[(ok.dag_id, ok.task_id, ok.run_id, "return_value")] = {"ds": "2024-05-03", "rows": 220}
    assert ValidationResultLink().get_link(None, ti_key=ok) == "/loopline/validation/bikes/2024-05-03.html"

    # A failed suite returns nothing: the task runner passes the running task instance, whose context has the day.
    failed = key("bikes.features", "build_features", "manual__x")
    failed.get_template_context = lambda: {"params": {"ds": "2024-05-07"}}
    assert ValidationResultLink().get_link(None, ti_key=failed) == "/loopline/validation/bikes/2024-05-07.html"
    no_day = key("bikes.features", "build_features", "manual__y")
    no_day.get_template_context = lambda: {"params": {}, "data_interval_start": None}
    assert ValidationResultLink().get_link(None, ti_key=no_day) == ""
