"""Run Loopline's DAGs with ``dag.test()`` in a fresh interpreter against a temporary Airflow home.

Each call starts one Python process that imports the DAG file and runs ``dag.test()`` for each requested
run, in order, then prints one JSON line per run: the run's state and each task's state. A fresh process
keeps Airflow's configuration (read once at import) from leaking between tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]

RUNNER = r"""
import datetime as dt, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("dagfile", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
from airflow.sdk import DAG
dags = {v.dag_id: v for v in vars(mod).values() if isinstance(v, DAG)}
dag = dags[sys.argv[3]] if len(sys.argv) > 3 else next(iter(dags.values()))
for run in json.loads(sys.argv[2]):
    kwargs = {"run_conf": run.get("conf") or None}
    if run.get("logical_date"):
        kwargs["logical_date"] = dt.datetime.fromisoformat(run["logical_date"]).replace(tzinfo=dt.timezone.utc)
    else:
        kwargs["logical_date"] = None
    dr = dag.test(**kwargs)
    tis = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dr.get_task_instances()}
    # The extra links as the api-server reads them: from the XCom the task runner stored when each task finished.
    from airflow.serialization.definitions.operatorlink import XComOperatorLink
    links = {}
    for ti in dr.get_task_instances():
        for link in getattr(dag.get_task(ti.task_id), "operator_extra_links", ()) or ():
            url = XComOperatorLink(name=link.name, xcom_key=link.xcom_key).get_link(None, ti_key=ti.key)
            links[ti.task_id + ":" + link.name] = url
    # The XCom keys each task stored (one write per key through the execution API on a real stack).
    from sqlalchemy import select
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    xcoms = {}
    with create_session() as session:
        for task_id, key in session.execute(select(XComModel.task_id, XComModel.key).where(
                XComModel.dag_id == dag.dag_id, XComModel.run_id == dr.run_id)):
            xcoms.setdefault(task_id, []).append(key)
        # The tasks that sent their rendered template fields (one more execution API write per task).
        from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
        rendered = sorted(session.scalars(select(RTIF.task_id).where(RTIF.dag_id == dag.dag_id,
                                                                     RTIF.run_id == dr.run_id)))
    print("RESULT " + json.dumps({"state": str(getattr(dr.state, "value", dr.state)), "tis": tis, "links": links,
                                  "run_id": dr.run_id, "partition_key": dr.partition_key,
                                  "xcoms": {t: sorted(k) for t, k in xcoms.items()}, "rendered": rendered}),
          flush=True)
"""


def airflow_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "LOOPLINE_"))}
    env.update({
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow' / 'airflow.db'}",
        "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": r"(airflow|loopline|loopline_airflow)\..*",
        "LOOPLINE_HOME": str(home),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        "GIT_PYTHON_REFRESH": "quiet",
    })
    env.update(extra or {})
    return env


def migrate(env: dict[str, str]) -> None:
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    out = subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def dag_test(
    dag_id: str, runs: list[dict[str, Any]], env: dict[str, str], timeout: float = 600, *, file: str | None = None,
) -> list[dict[str, Any]]:
    """``runs``: ``[{"logical_date": "2013-01-05", "conf": {...}}, ...]``; returns one result per run: its
    ``state``, each task's state (``tis``), each task's extra links (``links``, ``"task_id:link name"`` → URL,
    "" when the task stored none), the XCom keys each task stored (``xcoms``) and the
    tasks that stored rendered template fields (``rendered``).

    ``file`` names the DAG file (in ``dags/``) when it is not ``<dag_id>.py``: the generated project DAGs all
    live in ``loopline_projects.py``.
    """
    path = REPO / "dags" / (file or f"{dag_id}.py")
    out = subprocess.run([sys.executable, "-c", RUNNER, str(path), json.dumps(runs), dag_id],
                         env=env, capture_output=True, text=True, timeout=timeout, check=False)
    results = [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and len(results) == len(runs), (
        f"dag.test of {dag_id} exited {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-6000:]}")
    return results
