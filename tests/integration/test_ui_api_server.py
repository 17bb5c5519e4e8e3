"""The Loopline page behind a real ``airflow api-server``: Airflow's auth on every route, the page rendered for a
signed-in user, the DAG-run tab reading a real run from the metadata DB, and the plugin's views listed.

One api-server (SimpleAuthManager, SQLite, a temporary AIRFLOW_HOME, this repository's ``plugins/`` and
``dags/``) on a free loopback port, the bikes project on the project path, one day of drift reports in the store
and the session's real MLflow server. The admin's password is the one SimpleAuthManager generated.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from loopline import reports
from loopline.settings import Settings
from loopline.store import PartitionStore
from loopline_dev.stack import SIMPLE_AUTH_MANAGER, free_port

from tests.support.airflow_api import stop, wait_healthy
from tests.support.airflow_env import airflow_env, migrate
from tests.support.bikes_project import START, write_project

pytestmark = pytest.mark.integration

AIRFLOW = str(Path(sys.executable).parent / "airflow")
DAY = (START + dt.timedelta(days=3)).isoformat()
RUN_ID = "manual__loopline_tab_test"
STARTUP_SECONDS = 420  # a cold api-server imports FastAPI, the UI and the plugin: minutes on a loaded machine


@dataclass
class ApiServer:
    url: str
    home: Path
    log: Path

    def get(self, path: str, token: str | None = None, params: dict[str, str] | None = None) -> tuple[int, str]:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        request = urllib.request.Request(f"{self.url}{path}{query}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def token(self) -> str:
        # SimpleAuthManager generated the admin's password at startup, into AIRFLOW_HOME.
        password_file = self.home / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = json.loads(password_file.read_text())["admin"]
        body = json.dumps({"username": "admin", "password": password}).encode()
        request = urllib.request.Request(f"{self.url}/auth/token", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status in (200, 201)
            return str(json.loads(response.read())["access_token"])


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory, mlflow_server_session: Any) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("ui_api_server")
    write_project(home / "projects", days=6, rows=50)
    store = PartitionStore(Settings(home=home).store_root)
    report = {"ds": DAY, "model_name": "bikes.duration", "model_version": "1", "feature_set_version": "2",
              "created_at": f"{DAY}T23:00:00+00:00", "config": {"psi_bands": [0.1, 0.2]},
              "decision": {"drifted": True, "reasons": ["temp_f psi 0.41"], "top_features": []},
              "features": {"temp_f": {"psi": 0.41}, "hour": {"psi": 0.02}}}
    reports.write_drift_report(store, "2", DAY, report, html=f"<html><body>bikes report {DAY}</body></html>",
                               dataset="bikes/duration/drift")
    port = free_port()
    env = airflow_env(home, {
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": "loopline-it-jwt-" + "k" * 48,
        "AIRFLOW__API__SECRET_KEY": "loopline-it-secret-" + "s" * 32,
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port), "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "LOOPLINE_PROJECTS_PATH": str(home / "projects"),
        "LOOPLINE_MLFLOW_TRACKING_URI": mlflow_server_session.uri,
    })
    migrate(env)
    # The generated DAGs into the metadata DB, and one manual drift run over two days, as the UI would trigger it.
    for args in (["dags", "reserialize"],
                 ["dags", "trigger", "bikes.duration.drift", "--run-id", RUN_ID,
                  "--conf", json.dumps({"start_ds": DAY, "end_ds": (START + dt.timedelta(days=4)).isoformat()})]):
        out = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=600, check=False)
        assert out.returncode == 0, f"airflow {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    log = home / "api-server.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen([AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log, STARTUP_SECONDS)
        yield ApiServer(url, home, log)
    finally:
        stop(proc)


ROUTES = ["/loopline/", "/loopline/api/models", f"/loopline/reports/bikes/duration/{DAY}.html",
          f"/loopline/validation/bikes/{DAY}.html"]


def test_anonymous_requests_get_401_on_every_route(api_server: ApiServer) -> None:
    for path in ROUTES:
        status, _ = api_server.get(path)
        assert status == 401, path
    status, _ = api_server.get("/loopline/", params={"dag_id": "bikes.duration.drift", "run_id": RUN_ID})
    assert status == 401


def test_a_signed_in_user_gets_the_page_the_json_and_the_report(api_server: ApiServer) -> None:
    token = api_server.token()
    status, page = api_server.get("/loopline/", token)
    assert status == 200, page[-2000:]
    assert "Project bikes" in page and "Project flights" in page
    assert f'title="temp_f {DAY}: PSI 0.4100"' in page
    status, body = api_server.get("/loopline/api/models", token)
    assert status == 200
    projects = {p["project"]: p for p in json.loads(body)["projects"]}
    [duration] = [m for m in projects["bikes"]["models"] if m["model"] == "duration"]
    assert [d["ds"] for d in duration["drift"]["days"]] == [DAY]
    status, report = api_server.get(f"/loopline/reports/bikes/duration/{DAY}.html", token)
    assert status == 200 and f"bikes report {DAY}" in report
    status, validation = api_server.get(f"/loopline/validation/bikes/{DAY}.html", token)
    assert status == 404 and f"no validation result and no features for {DAY}" in validation
    status, _ = api_server.get("/loopline/", "not-a-jwt")
    assert status == 403


def test_the_dag_run_tab_reads_the_run_from_the_metadata_db(api_server: ApiServer) -> None:
    token = api_server.token()
    status, body = api_server.get("/loopline/api/models", token,
                                  {"dag_id": "bikes.duration.drift", "run_id": RUN_ID})
    assert status == 200, body[-2000:]
    data = json.loads(body)
    assert data["filter"]["days"] == [DAY, (START + dt.timedelta(days=4)).isoformat()]
    assert [m["model"] for p in data["projects"] for m in p["models"]] == ["duration"]
    status, page = api_server.get("/loopline/", token, {"dag_id": "bikes.duration.drift", "run_id": RUN_ID})
    assert status == 200 and f"run <b>{RUN_ID}</b>" in page and "Project flights" not in page
    status, other = api_server.get("/loopline/", token, {"dag_id": "not_ours", "run_id": "manual__1"})
    assert status == 200 and "is not a Loopline DAG" in other


def test_the_nav_dag_and_dag_run_views_are_listed(api_server: ApiServer) -> None:
    status, body = api_server.get("/api/v2/plugins", api_server.token())
    assert status == 200
    [plugin] = [p for p in json.loads(body)["plugins"] if p["name"] == "loopline"]
    views = {v["destination"]: v["href"] for v in plugin["external_views"]}
    assert views == {"nav": "/loopline/", "dag": "/loopline/?dag_id={DAG_ID}",
                     "dag_run": "/loopline/?dag_id={DAG_ID}&run_id={RUN_ID}"}
