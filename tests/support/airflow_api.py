"""A throw-away ``airflow api-server`` on loopback: SQLite in a temporary Airflow home, SimpleAuthManager, one small
DAG that ``airflow dags test`` has run once (a finished run, its task instance, an XCom, an asset event). For the
REST client's integration test and ``benchmarks/rest_client.py``; no scheduler runs.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loopline_dev.stack import free_port

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
AIRFLOW = str(Path(sys.executable).parent / "airflow")


class ApiServerError(RuntimeError):
    """The api-server (or one of the commands preparing its home) failed; the message has its output."""


def _airflow(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    out = subprocess.run([AIRFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if out.returncode != 0:
        raise ApiServerError(f"airflow {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait for the health endpoint; tolerant of a loaded machine (a first start imports a lot)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ApiServerError(f"api-server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise ApiServerError(f"api-server not healthy after {timeout:.0f}s:\n{log.read_text()[-3000:]}")


@contextmanager
def api_server(root: Path, timeout: float = 240) -> Iterator[tuple[str, str]]:
    """Prepare an Airflow home under ``root``, start the api-server; yields its URL and the admin password. The
    server (its whole process group) is stopped on exit."""
    home, dags, plugins = root / "airflow", root / "dags", root / "plugins"
    for d in (home, dags, plugins):
        d.mkdir(parents=True, exist_ok=True)
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
        proc = subprocess.Popen([AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(port)], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_healthy(url, proc, log, timeout)
        # SimpleAuthManager writes the generated password of each user it was given when it starts.
        yield url, json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started with ``start_new_session=True``: its whole process group, TERM then KILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
