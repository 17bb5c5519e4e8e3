"""Start and stop Loopline's services as local processes: Airflow's own components and an MLflow server.

Two topologies, one code path:

- **embedded** (``make demo`` / ``make up``): SQLite metadata DB, LocalExecutor sized for two cores,
  api-server, scheduler, dag-processor, triggerer, and ``mlflow server`` on a local SQLite file;
- **production** (``make stack``): PostgreSQL metadata DB, CeleryExecutor on Redis with N workers, the same
  Airflow components, and ``mlflow server`` on PostgreSQL — the topology of ``docker-compose.yaml``.

Every process listens on loopback, runs in its own session (so stopping kills its whole process group) and
logs to ``<home>/logs/<name>.log``. The running stack is described in ``<home>/stack.json`` so another
command (``make down``) can stop exactly what was started.

This module starts processes; it does not import Airflow.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loopline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKGROUND_WRITERS = ("scheduler", "triggerer", "dag-processor")


class StackError(RuntimeError):
    """A service did not start or did not become healthy; the message says which and where its log is."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StackConfig:
    """What to start.

    Attributes:
        home: Folder for everything the stack writes (Airflow home, MLflow DB, logs, the store).
        executor: ``LocalExecutor`` or ``CeleryExecutor``.
        metadata_db: SQLAlchemy URL of the Airflow metadata DB (default: SQLite under ``home``).
        mlflow_backend: MLflow backend store URI (default: SQLite under ``home``).
        parallelism: Airflow ``[core] parallelism`` — task processes at once; 3 suits two cores.
        celery_workers: Number of Celery workers (CeleryExecutor only).
        celery_concurrency: Task slots per Celery worker.
        broker_url / result_backend: Celery broker and result backend.
        preload: Import the heavy libraries once in the processes that fork task processes (the scheduler
            for LocalExecutor, the workers for Celery) so each task starts warm instead of paying ~12 s of
            imports (see ``loopline_airflow.preload``).
        dags_folder / plugins_folder: The project's folders.
        extra_env: More environment for every process.
    """

    home: Path
    executor: str = "LocalExecutor"
    metadata_db: str = ""
    mlflow_backend: str = ""
    parallelism: int = 3
    celery_workers: int = 0
    celery_concurrency: int = 2
    broker_url: str = "redis://127.0.0.1:6379/0"
    result_backend: str = ""
    preload: bool = True
    api_port: int = 0
    mlflow_port: int = 0
    log_server_port: int = 0
    dags_folder: Path = REPO_ROOT / "dags"
    plugins_folder: Path = REPO_ROOT / "plugins"
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if not self.metadata_db:
            self.metadata_db = f"sqlite:///{self.home / 'airflow' / 'airflow.db'}"
        if not self.mlflow_backend:
            self.mlflow_backend = f"sqlite:///{self.home / 'mlflow.db'}"
        self.api_port = self.api_port or free_port()
        self.mlflow_port = self.mlflow_port or free_port()
        self.log_server_port = self.log_server_port or free_port()

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"


def _secret(path: Path, make: Any) -> str:
    """A secret generated once per home and kept in a file only the owner can read (never in git)."""
    if path.exists():
        return path.read_text().strip()
    value = str(make())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    path.chmod(0o600)
    return value


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


class Stack:
    """The running services. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, config: StackConfig, settings: Settings | None = None) -> None:
        self.config = config
        self.settings = settings or Settings(home=config.home)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.specs: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.restarts: dict[str, int] = {}
        self.bin = Path(sys.executable).parent
        self._stopping = threading.Event()
        self._held: set[str] = set()
        self._watchdog: threading.Thread | None = None

    # -- configuration ----------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment shared by every process: Airflow's configuration and Loopline's settings."""
        c = self.config
        secrets_dir = c.home / "secrets"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "LOOPLINE_"))}
        env.update(self.settings.as_env())
        env.update({
            "LOOPLINE_MLFLOW_TRACKING_URI": c.mlflow_url,
            "AIRFLOW_HOME": str(c.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(c.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(c.plugins_folder),
            "AIRFLOW__CORE__EXECUTOR": c.executor,
            "AIRFLOW__CORE__PARALLELISM": str(c.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(c.parallelism),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{c.api_url}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": _secret(secrets_dir / "fernet_key", _fernet_key),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(secrets_dir / "jwt_secret", lambda: secrets.token_urlsafe(32)),
            "AIRFLOW__API__SECRET_KEY": _secret(secrets_dir / "api_secret", lambda: secrets.token_urlsafe(32)),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(c.api_port),
            "AIRFLOW__API__BASE_URL": c.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": c.metadata_db,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
            "AIRFLOW__TRIGGERER__CAPACITY": "50",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Each stack gets its own log-server port so several can run side by side (tests).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(c.log_server_port),
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": r"(airflow|loopline|loopline_airflow)\..*",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            "GIT_PYTHON_REFRESH": "quiet",
            # The MLflow server's background job runner and LiteLLM's cost-map download are not used here.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        })
        if c.metadata_db.startswith("sqlite"):
            # SQLite allows one writer: wait up to a minute for the lock instead of failing at once (the
            # scheduler and a backfill being created write at the same time).
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] = "airflow_local_settings.connect_args"
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC"] = "airflow_local_settings.connect_args"
        if c.executor == "CeleryExecutor":
            env["AIRFLOW__CELERY__BROKER_URL"] = c.broker_url
            env["AIRFLOW__CELERY__RESULT_BACKEND"] = c.result_backend or f"db+{c.metadata_db}"
            env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = str(c.celery_concurrency)
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(c.extra_env)
        return env

    # -- processes --------------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        logs = self.config.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = (logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.config.home,
        )
        self.procs[name] = proc
        self.specs[name] = (args, env)
        self._write_state()
        return proc

    def supervise(self, max_restarts: int = 20, interval: float = 2.0) -> None:
        """Restart a component that exits on its own (``restart: unless-stopped`` in compose terms).

        The scheduler can die on a transient SQLite lock or foreign-key race when a backfill is created while
        it schedules; the embedded stack then recovers as a supervised deployment would.
        """

        def watch() -> None:
            while not self._stopping.wait(interval):
                for name, proc in list(self.procs.items()):
                    if proc.poll() is None or self._stopping.is_set() or name in self._held:
                        continue
                    count = self.restarts.get(name, 0)
                    if count >= max_restarts:
                        continue
                    self.restarts[name] = count + 1
                    logs = self.config.home / "logs" / f"{name}.log"
                    with logs.open("a") as fh:
                        fh.write(f"\n=== loopline.stack: {name} exited with {proc.returncode}; "
                                 f"restart {count + 1} ===\n")
                    args, env = self.specs[name]
                    self._spawn(name, args, env)

        self._watchdog = threading.Thread(target=watch, name="loopline-stack-watchdog", daemon=True)
        self._watchdog.start()

    def _run(self, name: str, args: list[str], env: dict[str, str], timeout: float = 600) -> None:
        logs = self.config.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            done = subprocess.run(args, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if done.returncode != 0:
            raise StackError(f"{' '.join(args[:3])} failed (exit {done.returncode}); see {logs / f'{name}.log'}")

    def start(self, timeout: float = 240) -> Stack:
        c = self.config
        c.airflow_home.mkdir(parents=True, exist_ok=True)
        env = self.env()
        self._write_local_settings()
        self._run("airflow-db-migrate", [str(self.bin / "airflow"), "db", "migrate"], env)
        self._spawn("mlflow", [
            str(self.bin / "mlflow"), "server", "--backend-store-uri", c.mlflow_backend,
            "--artifacts-destination", self.settings.mlflow_artifact_root, "--serve-artifacts",
            "--host", "127.0.0.1", "--port", str(c.mlflow_port), "--workers", "1",
        ], env)
        airflow = str(self.bin / "airflow")
        self._spawn("api-server", [airflow, "api-server", "--host", "127.0.0.1", "--port", str(c.api_port)], env)
        sched_env = {**env, "LOOPLINE_PRELOAD": "1" if c.preload and c.executor == "LocalExecutor" else "0"}
        self._spawn("scheduler", [airflow, "scheduler"], sched_env)
        self._spawn("dag-processor", [airflow, "dag-processor"], env)
        self._spawn("triggerer", [airflow, "triggerer"], env)
        for i in range(c.celery_workers if c.executor == "CeleryExecutor" else 0):
            worker_env = {**env, "LOOPLINE_PRELOAD": "1" if c.preload else "0"}
            self._spawn(f"celery-worker-{i + 1}", [
                airflow, "celery", "worker", "--celery-hostname", f"loopline-worker-{i + 1}@%h",
                "--concurrency", str(c.celery_concurrency), "--skip-serve-logs",
            ], worker_env)
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _write_local_settings(self) -> None:
        # Airflow imports ``airflow_local_settings`` from $AIRFLOW_HOME/config in every process; ours only
        # pre-imports heavy libraries where LOOPLINE_PRELOAD=1 (the process that forks task processes).
        config_dir = self.config.airflow_home / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (config_dir / "airflow_local_settings.py").write_text(
            '"""Written by loopline.stack: SQLite lock timeout, and warm the processes that fork tasks."""\n'
            "import os\n\n"
            "connect_args = {\"timeout\": 60}\n\n"
            'if os.environ.get("LOOPLINE_PRELOAD") == "1":\n'
            "    from loopline_airflow.preload import preload\n\n"
            "    preload()\n"
        )

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        checks = {"mlflow": f"{self.config.mlflow_url}/health",
                  "api-server": f"{self.config.api_url}/api/v2/monitor/health"}
        pending = set(checks) | {"scheduler", "triggerer", "dag_processor"}
        while pending and time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    log = self.config.home / "logs" / f"{name}.log"
                    raise StackError(f"{name} exited with {proc.returncode}; see {log}")
            if "mlflow" in pending and _get(checks["mlflow"]) is not None:
                pending.discard("mlflow")
            body = _get(checks["api-server"])
            if body is not None:
                pending.discard("api-server")
                try:
                    health = json.loads(body)
                except ValueError:
                    health = {}
                for comp in ("scheduler", "triggerer", "dag_processor"):
                    if health.get(comp, {}).get("status") == "healthy":
                        pending.discard(comp)
            time.sleep(1)
        if pending:
            logs = self.config.home / "logs"
            raise StackError(f"not healthy after {timeout:.0f}s: {sorted(pending)}; logs in {logs}")

    @contextmanager
    def paused(self, *names: str, grace: float = 30) -> Iterator[None]:
        """Stop components for the duration of the block, then start them again and wait until healthy."""
        names = names or BACKGROUND_WRITERS
        self._held.update(names)
        try:
            stop_processes({n: self.procs[n].pid for n in names}, grace)
            for n in names:
                self.procs[n].wait(timeout=5)
            yield
        finally:
            for n in names:
                args, env = self.specs[n]
                self._spawn(n, args, env)
            self._held.difference_update(names)
            self.wait_healthy()

    def create_backfill(self, client: Any, dag_id: str, from_date: str, to_date: str, **kwargs: Any) -> Any:
        """``POST /api/v2/backfills`` — on SQLite with the background writers held for the one transaction.

        Airflow cannot create a backfill on SQLite while its scheduler, triggerer and dag-processor write
        (measured: HTTP 503 "Database is locked" on every try with any of them running, 3.7 s to create 365
        runs with all three held; a half-created backfill it cleans up can also crash the scheduler). On
        PostgreSQL the call goes straight through.
        """
        if not self.config.metadata_db.startswith("sqlite"):
            return client.create_backfill(dag_id, from_date, to_date, **kwargs)
        with self.paused(*BACKGROUND_WRITERS):
            return client.create_backfill(dag_id, from_date, to_date, **kwargs)

    def stop(self, grace: float = 20) -> None:
        self._stopping.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=10)
        stop_processes({n: p.pid for n, p in self.procs.items()}, grace)
        for p in self.procs.values():
            try:
                p.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        state = self.config.home / "stack.json"
        if state.exists():
            state.unlink()

    def __enter__(self) -> Stack:
        self.start()
        self.supervise()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts for users --------------------------------------------------------------------------------
    @property
    def password_file(self) -> Path:
        return self.config.airflow_home / "simple_auth_manager_passwords.json.generated"

    def admin_password(self) -> str:
        return str(json.loads(self.password_file.read_text())["admin"])

    def _write_state(self) -> None:
        state = {
            "pids": {n: p.pid for n, p in self.procs.items()},
            "api_url": self.config.api_url,
            "mlflow_url": self.config.mlflow_url,
            "password_file": str(self.password_file),
            "config": {k: str(v) for k, v in asdict(self.config).items()},
        }
        (self.config.home / "stack.json").write_text(json.dumps(state, indent=2))


def stop_processes(pids: dict[str, int], grace: float = 20) -> None:
    """SIGTERM each process group, wait up to ``grace`` seconds, then SIGKILL what is left."""
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids.values()):
            time.sleep(0.5)
    finally:  # even when a second Ctrl-C interrupts the grace period, nothing is left running
        for pid in pids.values():
            _signal_group(pid, signal.SIGKILL)


def stop_from_state(home: Path) -> bool:
    """Stop a stack started by another command (``make down``); False when none is recorded."""
    state_file = Path(home) / "stack.json"
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    stop_processes({k: int(v) for k, v in state["pids"].items()})
    state_file.unlink()
    return True


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    """Whether any process of the group led by ``pid`` still runs (zombies waiting to be reaped do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            return True
    return False


def _get(url: str, timeout: float = 3) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return str(resp.read().decode())
    except (urllib.error.URLError, OSError, ValueError):
        return None


@contextmanager
def running(config: StackConfig, settings: Settings | None = None) -> Iterator[Stack]:
    """``with running(StackConfig(home=...)) as stack:`` — started, healthy, and always stopped."""
    stack = Stack(config, settings)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def reset_home(home: Path) -> None:
    """Remove a previous run's state (never called on a home that has a running stack)."""
    state = Path(home) / "stack.json"
    if state.exists():
        pids = json.loads(state.read_text()).get("pids", {})
        alive = sorted(name for name, pid in pids.items() if _alive(int(pid)))
        if alive:
            raise StackError(f"the stack recorded in {state} still runs ({', '.join(alive)}); `make down` first")
    shutil.rmtree(home, ignore_errors=True)
