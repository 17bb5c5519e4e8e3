"""The DAGs generated from a project of another shape (bikes) run with ``dag.test()`` against a real MLflow
server, real GX and a real store: features, a bad day, the first champion by hand, scoring and drift, rollback."""

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
from tests.support.bikes_project import START, day_frame, write_project

pytestmark = pytest.mark.integration
FILE = "loopline_projects.py"
DAYS = 30
AS_OF = START + dt.timedelta(days=24)


class Bikes:
    def __init__(self, home: Path, tracking_uri: str) -> None:
        self.folder = write_project(home / "projects", days=DAYS, rows=220)
        self.project = load_project(self.folder)
        self.settings = Settings(home=home, mlflow_tracking_uri=tracking_uri)
        self.store = PartitionStore(self.settings.store_root)
        self.env = airflow_env(home, {"LOOPLINE_MLFLOW_TRACKING_URI": tracking_uri,
                                      "LOOPLINE_PROJECTS_PATH": str(home / "projects")})
        self.model = steps.model_settings(self.settings, self.project, "duration")


@pytest.fixture(scope="module")
def bikes(tmp_path_factory: pytest.TempPathFactory, mlflow_server_session) -> Bikes:  # type: ignore[no-untyped-def]
    b = Bikes(tmp_path_factory.mktemp("bikes_dags"), mlflow_server_session.uri)
    migrate(b.env)
    # History through the core (fast); the DAG runs below build and judge the days under test.
    for i in range(DAYS - 4):
        steps.features_day(b.project, b.store, START + dt.timedelta(days=i))
    return b


def test_the_features_dag_builds_a_day_and_skips_a_day_without_data(bikes: Bikes) -> None:
    day = START + dt.timedelta(days=DAYS - 3)
    runs = dag_test("bikes.features", [{"conf": {"ds": day.isoformat()}}, {"conf": {"ds": "2030-01-01"}}],
                    bikes.env, file=FILE)
    assert [r["tis"]["build_features"] for r in runs] == ["success", "skipped"]
    assert runs[0]["xcoms"] == {"build_features": ["_link_ValidationResultLink", "return_value"]}
    # Nothing of the features task is templated: it sends no rendered fields (one execution API write fewer).
    assert runs[0]["rendered"] == []
    assert runs[0]["links"] == {"build_features:Validation result": f"/loopline/validation/bikes/{day}.html"}
    manifest = bikes.store.manifest("bikes/features", "2", day)
    assert manifest.rows == 220


def test_a_day_that_does_not_fit_the_project_fails_and_writes_nothing(bikes: Bikes) -> None:
    day = START + dt.timedelta(days=DAYS - 1)
    day_frame(day, 220).drop(columns=["temp_f"]).to_csv(bikes.folder / "rentals" / f"ds={day}.csv", index=False)
    [run] = dag_test("bikes.features", [{"conf": {"ds": day.isoformat()}}], bikes.env, file=FILE)
    assert run["tis"] == {"build_features": "failed"}
    # the failed day's link still opens its validation result (written beside the partition)
    assert run["links"] == {"build_features:Validation result": f"/loopline/validation/bikes/{day}.html"}
    assert not bikes.store.exists("bikes/features", "2", day)
    assert bikes.store.exists("bikes/features", "2", START)  # other days untouched


def test_retrain_by_hand_promotes_the_first_champion_then_scores_and_checks_drift(bikes: Bikes) -> None:
    [run] = dag_test("bikes.duration.retrain", [{"conf": {"as_of": AS_OF.isoformat()}}], bikes.env, file=FILE)
    assert run["tis"] == {"plan": "success", "validate_training_window": "success", "train_challenger": "success",
                          "promote": "success"}, run
    # A task's dict result is one XCom, not one per key (each is a write through the execution API).
    assert {t: [k for k in keys if not k.startswith("_link_")] for t, keys in run["xcoms"].items()} == {
        "plan": ["return_value"], "validate_training_window": ["return_value"], "train_challenger": ["return_value"],
        "promote": ["return_value"]}, run["xcoms"]
    # Only the tasks that take upstream results (resolved as templates) or templated arguments render them.
    assert run["rendered"] == ["promote", "train_challenger", "validate_training_window"]
    assert resolve_alias(bikes.model, CHAMPION) == "1"
    mv = client(bikes.model).get_model_version("bikes.duration", "1")
    assert mv.tags["loopline.trigger"] == "manual" and mv.tags["loopline.decision"] == "promote"
    assert mv.tags["loopline.project"] == "bikes" and mv.tags["loopline.task"] == "regression"
    ui = bikes.env["LOOPLINE_MLFLOW_TRACKING_URI"].rstrip("/")
    assert run["links"] == {
        "train_challenger:MLflow run": f"{ui}/#/runs/{mv.run_id}",
        "train_challenger:MLflow model version": f"{ui}/#/models/bikes.duration/versions/1",
        "promote:MLflow run": f"{ui}/#/runs/{mv.run_id}",
        "promote:MLflow model version": f"{ui}/#/models/bikes.duration/versions/1",
    }

    days = [AS_OF + dt.timedelta(days=i) for i in range(2)]  # featured by the fixture
    conf = {"start_ds": days[0].isoformat(), "end_ds": days[-1].isoformat()}
    [scored] = dag_test("bikes.duration.score", [{"conf": conf}], bikes.env, file=FILE)
    assert scored["tis"] == {"score": "success"}
    assert scored["xcoms"] == {"score": ["return_value"]}
    assert scored["rendered"] == []
    # dag.test() cannot give a run a partition key (Airflow 3.3.2): a run by hand names its days in Params.
    assert scored["partition_key"] is None
    for d in days:
        preds = bikes.store.read("bikes/duration/predictions", "2", d)
        assert set(preds["model_version"]) == {"1"} and preds["score"].max() > 1.0  # minutes, not probabilities
        # The manifest names the run that scored the day (the demo checks "exactly once" with it).
        extra = bikes.store.manifest("bikes/duration/predictions", "2", d).extra
        assert (extra["dag_id"], extra["run_id"]) == ("bikes.duration.score", scored["run_id"])
    [checked] = dag_test("bikes.duration.drift", [{"conf": conf}], bikes.env, file=FILE)
    assert checked["tis"] == {"check_drift": "success"}
    assert checked["xcoms"] == {"check_drift": ["_link_DriftReportLink", "return_value"]}
    assert checked["rendered"] == []
    assert checked["links"] == {"check_drift:Drift report": f"/loopline/reports/bikes/duration/{days[-1]}.html"}
    report = read_drift_report(bikes.store, "2", days[-1], dataset="bikes/duration/drift")
    assert report is not None and report["model_name"] == "bikes.duration"
    assert (report["run"]["dag_id"], report["run"]["run_id"]) == ("bikes.duration.drift", checked["run_id"])
    assert set(report["features"]) >= {"station", "temp_c", "bike_type"}
    # Two scored days in a 7-day window: prediction drift is not judged yet, and the report says so.
    assert any("not judged" in note for note in report["notes"]), report["notes"]


def test_a_second_champion_and_a_rollback(bikes: Bikes) -> None:
    if resolve_alias(bikes.model, CHAMPION) is None:
        pytest.skip("needs the first champion (test above)")
    [run] = dag_test("bikes.duration.retrain", [{"conf": {"as_of": (AS_OF + dt.timedelta(days=1)).isoformat(),
                                                          "force": True}}], bikes.env, file=FILE)
    assert run["tis"]["promote"] == "success"
    if resolve_alias(bikes.model, CHAMPION) != "2":
        pytest.skip("the forced challenger was worse and rightly rejected; nothing to roll back")
    [back] = dag_test("bikes.duration.rollback", [{"conf": {"reason": "test"}}], bikes.env, file=FILE)
    assert back["tis"] == {"rollback": "success"}
    ui = bikes.env["LOOPLINE_MLFLOW_TRACKING_URI"].rstrip("/")
    assert back["links"] == {"rollback:MLflow model version": f"{ui}/#/models/bikes.duration/versions/1"}
    assert resolve_alias(bikes.model, CHAMPION) == "1"
