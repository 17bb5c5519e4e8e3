"""``loopline_dev.rest.AirflowClient`` against a real ``airflow api-server`` (SQLite, SimpleAuthManager, loopback).

A throw-away Airflow home holds one small DAG: ``airflow dags test`` runs it once (so a finished run, its task
instances, an XCom and an asset event exist), then the api-server starts and every call of the client is made
against it: the token from ``POST /auth/token``, the DAG list, pausing, triggering, run and task-instance
listings, the XCom, a backfill, the asset events — each answer deserialized by ``apache-airflow-client``.
No scheduler runs, so the triggered run and the backfill's runs stay queued.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopline_dev.rest import AirflowAPIError, AirflowClient
from loopline_dev.stack import free_port

pytestmark = pytest.mark.integration

DAG_ID = "loopline_rest_probe"
ASSET = "loopline_rest_probe_out"
DAG_FILE = f'''
import pendulum
from airflow.sdk import DAG, Asset, task

with DAG("{DAG_ID}", schedule="@daily", start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False,
         tags=["probe"]):
    @task(outlets=[Asset("{ASSET}")])
    def answer():
        return {{"answer": 42, "day": "2024-01-01"}}

    answer()
'''


def _airflow(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    out = subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, capture_output=True,
                         text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"airflow {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 240) -> None:
    """Wait for the api-server's health endpoint; tolerant of a loaded machine (a first start imports a lot)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"api-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"api-server not healthy after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real api-server on a free loopback port; yields its URL and the admin password."""
    root = tmp_path_factory.mktemp("rest")
    home, dags, plugins = root / "airflow", root / "dags", root / "plugins"
    for d in (home, dags, plugins):
        d.mkdir()
    (dags / "probe.py").write_text(DAG_FILE, encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "LOOPLINE_"))}
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "GIT_PYTHON_REFRESH": "quiet",
    })
    _airflow(env, "db", "migrate")
    _airflow(env, "dags", "reserialize")
    _airflow(env, "dags", "test", DAG_ID, "2024-01-01")  # in-process: a finished run, an XCom, an asset event
    log = root / "api-server.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--host", "127.0.0.1",
                                 "--port", str(port)], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        _wait_healthy(url, proc, log)
        # SimpleAuthManager writes the generated password of each user it was given when it starts.
        password_file = home / "simple_auth_manager_passwords.json.generated"
        yield url, json.loads(password_file.read_text())["admin"]
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def api(airflow: tuple[str, str]) -> AirflowClient:
    url, password = airflow
    return AirflowClient(url, "admin", password, timeout=60, retries=3)


def test_a_wrong_password_gets_no_token(airflow: tuple[str, str]) -> None:
    with pytest.raises(AirflowAPIError) as err:
        AirflowClient(airflow[0], "admin", "not-the-password", retries=0).dags()
    assert err.value.status == 401 and "/auth/token" in str(err.value)


def test_a_forged_token_is_refused(airflow: tuple[str, str]) -> None:
    with pytest.raises(AirflowAPIError) as err:
        AirflowClient(airflow[0], token="not-a-token", retries=0).dags()
    assert err.value.status in {401, 403} and "GET /api/v2/dags" in str(err.value)


def test_dags_pause_and_the_finished_run(api: AirflowClient) -> None:
    assert api.token().count(".") == 2  # a JWT
    [dag] = [d for d in api.dags() if d["dag_id"] == DAG_ID]
    assert dag["is_paused"] is True and dag["tags"][0]["name"] == "probe"
    assert api.set_paused(DAG_ID, False)["is_paused"] is False
    assert next(d for d in api.dags() if d["dag_id"] == DAG_ID)["is_paused"] is False

    [done] = api.dag_runs(DAG_ID, state=["success"])
    assert done["logical_date"].startswith("2024-01-01T00:00:00") and done["run_type"] == "manual"
    assert api.wait_run(DAG_ID, done["dag_run_id"], timeout=5)["state"] == "success"
    [ti] = api.task_instances(DAG_ID, done["dag_run_id"])
    assert (ti["task_id"], ti["state"], ti["try_number"]) == ("answer", "success", 1)
    assert [t["task_id"] for t in api.all_task_instances(DAG_ID, state="success")] == ["answer"]
    assert api.xcom(DAG_ID, done["dag_run_id"], "answer") == {"answer": 42, "day": "2024-01-01"}

    [event] = api.asset_events(ASSET)
    assert event["source_run_id"] == done["dag_run_id"] and event["source_task_id"] == "answer"
    assert api.asset_events("no_such_asset") == []


def test_trigger_and_read_back_a_run(api: AirflowClient) -> None:
    run = api.trigger(DAG_ID, conf={"as_of": "2024-01-02"}, run_id="manual__rest_probe")
    assert (run["dag_run_id"], run["conf"], run["state"]) == ("manual__rest_probe", {"as_of": "2024-01-02"}, "queued")
    assert api.dag_run(DAG_ID, "manual__rest_probe")["conf"] == {"as_of": "2024-01-02"}
    assert "manual__rest_probe" in {r["dag_run_id"] for r in api.dag_runs(DAG_ID, state=["queued"])}
    with pytest.raises(AirflowAPIError) as err:  # the same run id again, on the first try: a real conflict
        api.trigger(DAG_ID, run_id="manual__rest_probe")
    assert err.value.status == 409
    with pytest.raises(TimeoutError):
        api.wait_run(DAG_ID, "manual__rest_probe", timeout=0.1, poll=0.05)  # no scheduler: it stays queued


def test_a_backfill_is_created_and_read_back(api: AirflowClient) -> None:
    bf = api.create_backfill(DAG_ID, "2024-01-03", "2024-01-05", max_active_runs=2)
    assert (bf["dag_id"], bf["max_active_runs"], bf["completed_at"]) == (DAG_ID, 2, None)
    assert api.backfill(int(bf["id"]))["from_date"].startswith("2024-01-03")
    runs = api.dag_runs(DAG_ID, run_type=["backfill"], logical_date_gte="2024-01-03T00:00:00Z")
    assert sorted(r["logical_date"][:10] for r in runs) == ["2024-01-03", "2024-01-04", "2024-01-05"]
    # The raw call the demo uses to hold a backfill, through the same client.
    assert api.request("PUT", f"/api/v2/backfills/{bf['id']}/pause")["is_paused"] is True
