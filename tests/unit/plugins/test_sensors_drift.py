"""DriftSensor: poke, deferral (TaskDeferred with a DriftTrigger), completion, skip semantics."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowSkipException, TaskDeferred
from loopline_airflow.sensors.drift import DriftSensor
from loopline_airflow.triggers.drift import DriftTrigger

from tests.unit.plugins.conftest import put_report

pytestmark = pytest.mark.unit


def sensor(store, **kw) -> DriftSensor:
    return DriftSensor(task_id="drift", model_name="m", feature_set_version="1", store_root=store.root,
                       poke_interval=5, timeout=60, **kw)


def test_defers_with_a_drift_trigger_when_no_report_yet(report_store, context):
    op = sensor(report_store, ds="2013-03-01", deferrable=True)
    with pytest.raises(TaskDeferred) as exc:
        op.execute(context)
    trigger = exc.value.trigger
    assert isinstance(trigger, DriftTrigger) and exc.value.method_name == "execute_complete"
    assert exc.value.timeout == dt.timedelta(seconds=60)
    assert trigger.ds == "2013-03-01" and trigger.store_root == report_store.root and trigger.poll_interval == 5


def test_returns_at_once_when_the_report_is_already_there(report_store, context):
    put_report(report_store, "2013-03-01", drifted=True)
    out = sensor(report_store, ds="2013-03-01", deferrable=True).execute(context)
    assert out["drifted"] is True and out["ds"] == "2013-03-01" and out["uri"].endswith("report.json")


def test_poke_mode_and_skip_when_not_drifted(report_store, context):
    put_report(report_store, "2013-03-01", drifted=False)
    with pytest.raises(AirflowSkipException, match="says not drifted"):
        sensor(report_store, ds="2013-03-01", deferrable=False).execute(context)
    assert sensor(report_store, ds="2013-03-01", skip_when_not_drifted=False).poke(context).is_done is False


def test_since_mode_ignores_old_and_undrifted_reports(report_store, context):
    put_report(report_store, "2013-03-01", drifted=True, created="2013-03-02T00:00:00Z")
    put_report(report_store, "2013-03-02", drifted=False, created="2013-03-03T00:00:00Z")
    op = sensor(report_store, since="2013-03-02T12:00:00+00:00")
    assert op.poke(context).is_done is False
    put_report(report_store, "2013-03-03", drifted=True, created="2013-03-04T00:00:00Z")
    assert op.poke(context).xcom_value["ds"] == "2013-03-03"


def test_execute_complete(report_store, context):
    op = sensor(report_store, ds="2013-03-01")
    summary = {"ds": "2013-03-01", "model_name": "m", "model_version": "2", "reasons": [], "uri": "u"}
    assert op.execute_complete(context, {"status": "drifted", "report": summary}) == summary
    with pytest.raises(AirflowSkipException):
        op.execute_complete(context, {"status": "not_drifted", "report": {**summary, "drifted": False}})
    with pytest.raises(AirflowException, match="unreadable"):
        op.execute_complete(context, {"status": "error", "message": "bad"})
    with pytest.raises(AirflowException, match="cannot read"):
        op.execute_complete(context, None)


def test_malformed_report_fails_with_its_name(report_store, context):
    report_store.write_side_file("reports", "drift", "1", "2013-03-01", "report.json", "{}")
    with pytest.raises(AirflowException, match="lacks"):
        sensor(report_store, ds="2013-03-01").poke(context)


def test_timeout_and_soft_fail_use_the_base_semantics(report_store, context):
    from airflow.sdk.exceptions import AirflowSensorTimeout

    with pytest.raises(AirflowSensorTimeout):
        DriftSensor(task_id="d", model_name="m", feature_set_version="1", store_root=report_store.root,
                    ds="2013-03-09", poke_interval=0, timeout=0).execute(context)
    with pytest.raises(AirflowSkipException):
        DriftSensor(task_id="d", model_name="m", feature_set_version="1", store_root=report_store.root,
                    ds="2013-03-09", poke_interval=0, timeout=0, soft_fail=True).execute(context)
