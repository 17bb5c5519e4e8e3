"""Fixtures for the Airflow layer's unit tests: a task context, drift reports in a tmp store."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import pytest
from loopline import reports
from loopline.store import PartitionStore

os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


def make_context(run_id: str = "manual__1", dag_id: str = "d", task_id: str = "t") -> dict[str, Any]:
    ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, try_number=1)
    return {"ti": ti, "run_id": run_id, "dag": SimpleNamespace(dag_id=dag_id), "logical_date": None}


@pytest.fixture
def context() -> dict[str, Any]:
    return make_context()


@pytest.fixture
def report_store(tmp_path) -> PartitionStore:
    return PartitionStore((tmp_path / "store").as_uri())


def drift_report(ds: str, drifted: bool, created: str, model: str = "m") -> dict[str, Any]:
    return {"ds": ds, "model_name": model, "model_version": "2", "feature_set_version": "1", "created_at": created,
            "decision": {"drifted": drifted, "reasons": ["temp psi 0.4"] if drifted else [],
                         "top_features": [["temp", 0.4]]}, "features": {}}


def put_report(store: PartitionStore, ds: str, drifted: bool, created: str = "2013-03-02T00:00:00Z",
               model: str = "m") -> str:
    return reports.write_drift_report(store, "1", ds, drift_report(ds, drifted, created, model))
