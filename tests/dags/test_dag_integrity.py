"""DAG integrity: every DAG file imports cleanly, cheaply, without touching a database or the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
PROJECTS_FILE = REPO / "dags" / "loopline_projects.py"
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
HEAVY = ["pandas", "numpy", "pyarrow", "sklearn", "scipy", "mlflow", "great_expectations", "boto3",
         "google.cloud.storage", "google.cloud.bigquery"]

# Runs in a fresh interpreter per file: imports the DAG file with every database and socket call made to fail,
# then reports what the file defined and which heavy modules it pulled in.
PROBE = r"""
import json, socket, sys, time
import sqlalchemy.engine
def refuse(*a, **k):
    raise AssertionError("DAG file opened a connection while parsing")
socket.socket.connect = refuse
socket.create_connection = refuse
sqlalchemy.engine.Engine.connect = refuse
import importlib.util
t0 = time.perf_counter()
spec = importlib.util.spec_from_file_location("dagfile", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
took = time.perf_counter() - t0
from airflow.sdk import DAG
dags = [v for v in vars(mod).values() if isinstance(v, DAG)]
def schedule(d):
    t = d.timetable
    out = {"timetable": type(t).__name__, "max_active_runs": d.max_active_runs}
    if type(t).__name__ == "CronPartitionTimetable":
        out.update(key_format=t.key_format, run_offset=t.run_offset)
    if type(t).__name__ == "PartitionedAssetTimetable":
        out.update(assets=[a.name for a in t.asset_condition.iter_assets().values()] if hasattr(
            t.asset_condition, "iter_assets") else [t.asset_condition.name],
                   mapper=type(t.default_partition_mapper).__name__)
    return out
heavy = [m for m in sys.argv[2].split(",") if m in sys.modules]
print(json.dumps({"seconds": took, "heavy": heavy, "dags": [
    {"dag_id": d.dag_id, "tags": sorted(d.tags), "doc_md": bool(d.doc_md), "owner": d.default_args.get("owner"),
     "schedule": schedule(d),
     "tasks": {t.task_id: {"retries": t.retries, "timeout": t.execution_timeout.total_seconds()
                            if t.execution_timeout else None, "callback": bool(t.on_failure_callback)}
               for t in d.tasks}}
    for d in dags]}))
"""


def _probe(path: Path, tmp_path: Path, **extra_env: str) -> dict:
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/never.db",
           "LOOPLINE_HOME": str(tmp_path / "home"), "PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'include'}",
           **extra_env}
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), ",".join(HEAVY)], env=env, capture_output=True,
                         text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_every_dag_is_generated_from_a_project_file() -> None:
    # The hand-written flights DAGs are gone: flights is a project like any other (include/projects/flights).
    assert DAG_FILES == [PROJECTS_FILE]


def test_dag_files_import_no_heavy_module_statically() -> None:
    for path in DAG_FILES:
        for line in path.read_text().splitlines():
            if line.startswith(("import ", "from ")):
                assert not any(f" {m}" in line.split(" import")[0] for m in HEAVY), f"{path.name}: {line}"


# -- the DAGs generated from model projects ----------------------------------------------------------------------
def test_every_project_dag_is_light_and_well_formed(tmp_path: Path) -> None:
    from tests.support.bikes_project import write_project

    write_project(tmp_path / "projects", days=0)
    probe = _probe(PROJECTS_FILE, tmp_path, LOOPLINE_PROJECTS_PATH=str(tmp_path / "projects"))
    assert probe["heavy"] == [], f"the projects DAG file imports heavy modules at parse time: {probe['heavy']}"
    dags = {d["dag_id"]: d for d in probe["dags"]}
    for project, models in (("flights", ("disruption", "arrival_delay")), ("bikes", ("duration", "late_return"))):
        assert f"{project}.features" in dags
        assert f"project:{project}" in dags[f"{project}.features"]["tags"]
        for model in models:
            for step in ("score", "drift", "retrain", "rollback"):
                dag = dags[f"{project}.{model}.{step}"]
                assert {"loopline", f"project:{project}", f"model:{model}"} <= set(dag["tags"]), dag
    for project in ("flights", "bikes"):
        # One partition per day, keyed by the day; scoring and drift once per upstream partition, same key.
        assert dags[f"{project}.features"]["schedule"] == {
            "timetable": "CronPartitionTimetable", "max_active_runs": 4,
            "key_format": "%Y-%m-%d", "run_offset": -1}
    for model, upstream in (("disruption", "loopline.flights.features"),
                            ("arrival_delay", "loopline.flights.features")):
        assert dags[f"flights.{model}.score"]["schedule"] == {
            "timetable": "PartitionedAssetTimetable", "max_active_runs": 3,
            "assets": [upstream], "mapper": "IdentityMapper"}
        assert dags[f"flights.{model}.drift"]["schedule"] == {
            "timetable": "PartitionedAssetTimetable", "max_active_runs": 3,
            "assets": [f"loopline.flights.{model}.predictions"], "mapper": "IdentityMapper"}
        # Retraining stays on drift events and its cron.
        assert dags[f"flights.{model}.retrain"]["schedule"]["timetable"] == "AssetOrTimeSchedule"
    for dag_id, dag in dags.items():
        assert dag["doc_md"] and dag["owner"] == "loopline", dag_id
        for task_id, t in dag["tasks"].items():
            assert t["retries"] >= 1 and t["callback"], (dag_id, task_id)
            assert t["timeout"] and t["timeout"] <= 3600, (dag_id, task_id)



def test_a_task_process_renders_only_its_own_dag(tmp_path: Path) -> None:
    # Every task process parses the DAG file again to find its DAG; Airflow's parsing context names it, and the
    # file renders that one DAG — the same DAG, task for task, as the full parse renders.
    from tests.support.bikes_project import write_project

    write_project(tmp_path / "projects", days=0)
    projects = str(tmp_path / "projects")
    full = {d["dag_id"]: d for d in _probe(PROJECTS_FILE, tmp_path, LOOPLINE_PROJECTS_PATH=projects)["dags"]}
    for dag_id in ("flights.features", "flights.arrival_delay.drift", "bikes.duration.score",
                   "bikes.late_return.retrain", "bikes.duration.rollback"):
        probe = _probe(PROJECTS_FILE, tmp_path, LOOPLINE_PROJECTS_PATH=projects,
                       _AIRFLOW_PARSING_CONTEXT_DAG_ID=dag_id)
        assert [d["dag_id"] for d in probe["dags"]] == [dag_id]
        assert probe["dags"][0] == full[dag_id]
    # A DAG id of no Loopline shape (another DAG file's) renders everything, as a parse without context does.
    other = _probe(PROJECTS_FILE, tmp_path, LOOPLINE_PROJECTS_PATH=projects,
                   _AIRFLOW_PARSING_CONTEXT_DAG_ID="example_bash_operator")
    assert {d["dag_id"] for d in other["dags"]} == set(full)

BAGGING = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
print(json.dumps({"dags": sorted(bag.dags), "errors": {k: str(v) for k, v in bag.import_errors.items()}}))
"""


def test_a_broken_project_shows_as_an_import_error_and_the_others_still_load(tmp_path: Path) -> None:
    from tests.support.bikes_project import PROJECT_YAML, write_project

    write_project(tmp_path / "projects", days=0)
    broken = tmp_path / "projects" / "broken_shop" / "project.yaml"
    broken.parent.mkdir()
    broken.write_text(PROJECT_YAML.replace("project: bikes", "project: broken_shop").replace(
        "task: regression", "task: regresion"))
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / PROJECTS_FILE.name).write_text(PROJECTS_FILE.read_text())
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/never.db", "LOOPLINE_HOME": str(tmp_path),
           "PYTHONPATH": f"{REPO / 'plugins'}:{REPO / 'include'}", "LOOPLINE_PROJECTS_PATH": str(tmp_path / "projects")}
    out = subprocess.run([sys.executable, "-c", BAGGING, str(folder)], env=env, capture_output=True, text=True,
                         timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "bikes.duration.retrain" in result["dags"] and "flights.features" in result["dags"]
    assert not [d for d in result["dags"] if d.startswith("broken_shop")]
    [message] = result["errors"].values()
    assert str(broken) in message and "models.duration.task" in message, message
