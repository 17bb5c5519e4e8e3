"""Start and stop Loopline's services as local processes: Airflow's own components and an MLflow server.

Two topologies, one code path:

- **embedded** (``make demo`` / ``make up``): SQLite metadata DB, LocalExecutor sized for two cores,
  api-server, scheduler, dag-processor, triggerer, and ``mlflow server`` on a local SQLite file;
- **production** (``make stack``): PostgreSQL metadata DB, CeleryExecutor on Redis with N workers, the same
  Airflow components, and ``mlflow server`` on PostgreSQL — the topology of ``docker-compose.yaml``.

Every process listens on loopback, runs in its own session (so stopping kills its whole process group) and
logs to ``<home>/logs/<name>.log``. The running stack is described in ``<home>/stack.json`` so another
command (``make down``) can stop exactly what was started.

``python -m loopline_dev.stack up|down|restart NAME|status`` is the command line behind ``make stack`` and
``make stack-down``. This module starts processes; it does not import Airflow.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
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
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loopline.redact import mask_url
from loopline.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKGROUND_WRITERS = ("scheduler", "triggerer", "dag-processor")
DEFAULT_PG_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# docker-compose.yaml's services and the local process (or step) that plays each one in the process topology;
# postgres and redis are the machine's own servers. tests/unit/test_deploy_files.py keeps the two in step.
COMPOSE_SERVICES = {
    "postgres": "PostgreSQL at 127.0.0.1:5432",
    "redis": "Redis at 127.0.0.1:6379",
    "airflow-init": "airflow-db-migrate",
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery-worker-*",
    "mlflow": "mlflow",
    "flower": "(optional, not started)",
}


# The embedded stack's SQLite files (Airflow's and MLflow's) run in WAL mode with ``synchronous=NORMAL``: a commit
# appends to the write-ahead log without an fsync (the log is synced at each checkpoint). SQLite's default, FULL,
# syncs on every commit while holding the database's one write lock (2.7 ms per fsync measured here), and every
# other writer — the scheduler, the api-server answering each task's calls — waits behind it. NORMAL in WAL mode
# keeps the database consistent through a crash of any process; a power cut may lose the last transactions, which
# a demo or development database may afford (the production stack runs on PostgreSQL).
# Airflow sets WAL on each connection itself; airflow_local_settings (imported by every Airflow process before it
# connects) adds NORMAL. MLflow's file is put in WAL mode before its server starts (the mode is kept in the file).
SQLITE_SYNCHRONOUS_NORMAL = """
from sqlalchemy import event
from sqlalchemy.engine import Engine


@event.listens_for(Engine, "connect")
def _sqlite_synchronous_normal(dbapi_connection, connection_record):
    if "sqlite" in type(dbapi_connection).__module__.lower():  # sqlite3 or SQLAlchemy's aiosqlite adapter
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
"""


class StackError(RuntimeError):
    """A service did not start or did not become healthy; the message says which and where its log is."""


API_SERVER_SQLITE_TIMEOUT = 8  # seconds; see Stack.command("api-server")

# Celery stack: how long a task may stay queued before the scheduler revokes its message and queues it again
# (``[scheduler] task_queued_timeout``), and how often it looks (``task_queued_timeout_check_interval``).
# A SIGKILLed worker leaves the messages it had received but not started unacked in Redis until the broker's
# visibility timeout (Airflow's default 86,400 s, which must stay above the longest task or a running retrain
# would be delivered twice): those tasks stay "queued" and only this check runs them again. With Airflow's
# 600 s / 120 s a backfill waited ~10 min for them; now at most 120 + 15 s after they were queued.
# Why 120 s is still far above a legitimate wait: ``parallelism`` equals the workers' slots, so the scheduler
# queues a task only when a slot is free and its message waits in Redis ~0 s (measured: queued -> running
# 0.1-3 s during a backfill); with a worker down, a message waits for a slot behind the surviving workers'
# tasks (seconds to ~2 min for a retrain under load). A task caught by the check is revoked and queued again,
# failed only after its third wait (``num_stuck_in_queued_retries`` = 2). The check never runs a task twice:
# the Execution API starts a task only from "queued" (row lock), and a task set back to scheduled under a
# running process is told to stop at its next heartbeat. The workload token sent with the message is valid for
# ``task_queued_timeout`` too, which is what a message may wait before it starts.
CELERY_TASK_QUEUED_TIMEOUT = 120
CELERY_TASK_QUEUED_CHECK_INTERVAL = 15


def _sqlite_wal(path: Path) -> None:
    """Put the SQLite file at ``path`` (created if missing) in WAL mode; the mode is stored in the file."""
    import sqlite3

    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")


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
        mlflow_auth: Run MLflow's basic-auth app: every request but ``/health`` needs the MLflow user's
            password (generated into ``<home>/secrets``); on in the production topology.
        mlflow_auth_db: Database of MLflow's users and permissions (default: SQLite under ``home/secrets``).
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
    mlflow_auth: bool = False
    mlflow_auth_db: str = ""
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
        if not self.mlflow_auth_db:
            self.mlflow_auth_db = f"sqlite:///{self.home / 'secrets' / 'mlflow_auth.db'}"
        self.api_port = self.api_port or free_port()
        self.mlflow_port = self.mlflow_port or free_port()
        self.log_server_port = self.log_server_port or free_port()

    @classmethod
    def production(cls, home: Path, *, database: str = "loopline", pg_url: str = DEFAULT_PG_URL,
                   redis_url: str = DEFAULT_REDIS_URL, workers: int = 2, concurrency: int = 2,
                   **kwargs: Any) -> StackConfig:
        """The production topology as local processes: Airflow on PostgreSQL database ``database``, MLflow on
        ``<database>_mlflow`` behind basic auth (its users in ``<database>_mlflow_auth``), CeleryExecutor on
        Redis with ``workers`` workers of ``concurrency`` slots."""
        base = pg_url.rstrip("/")
        return cls(home=home, executor="CeleryExecutor", metadata_db=f"{base}/{database}",
                   mlflow_backend=f"{base}/{database}_mlflow", mlflow_auth=True,
                   mlflow_auth_db=f"{base}/{database}_mlflow_auth", parallelism=workers * concurrency,
                   celery_workers=workers, celery_concurrency=concurrency, broker_url=redis_url, **kwargs)

    @property
    def databases(self) -> list[str]:
        """The PostgreSQL databases this stack uses (created on start when missing)."""
        urls = (self.metadata_db, self.mlflow_backend, *([self.mlflow_auth_db] if self.mlflow_auth else []))
        return [url for url in urls if url.startswith("postgresql")]

    @property
    def worker_names(self) -> list[str]:
        n = self.celery_workers if self.executor == "CeleryExecutor" else 0
        return [f"celery-worker-{i + 1}" for i in range(n)]

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700): created so, or narrowed if it was wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that no other user can ever read it.

    The bytes go to a new file created with mode 0600 (``os.open``: the mode is set at creation, whatever the
    umask, so there is no moment when the file is readable by others), which then replaces ``path``
    atomically: a reader sees the old content or the new, never half of it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _secret(path: Path, make: Any) -> str:
    """A secret generated once per home and kept in a file only the owner can read (never in git)."""
    if path.exists():
        return path.read_text().strip()
    private_dir(path.parent)
    value = str(make())
    write_private(path, value)
    return value


SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
# The MLflow account Loopline's processes use. The basic-auth app creates it as its admin on first start.
MLFLOW_USER = "admin"
MLFLOW_CONN_ID = "mlflow_default"


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


class Stack:
    """The running services. Use as a context manager, or ``start()`` / ``stop()``."""

    def __init__(self, config: StackConfig, settings: Settings | None = None) -> None:
        self.config = config
        # Everything that talks to MLflow, the tasks and this process alike, goes through the stack's server.
        self.settings = dataclasses.replace(settings or Settings(home=config.home),
                                            mlflow_tracking_uri=config.mlflow_url)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self.bin = Path(sys.executable).parent
        self._stopping = threading.Event()
        self._held: set[str] = set()
        self._watchdog: threading.Thread | None = None
        self._attached: dict[str, int] = {}

    # -- configuration ----------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment shared by every process: Airflow's configuration and Loopline's settings."""
        c = self.config
        secrets_dir = self.secrets_dir
        # Credentials are handed out per component (see command()), never inherited from the caller.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "LOOPLINE_", "MLFLOW_TRACKING_", "MLFLOW_AUTH_"))}
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
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__FERNET_KEY": _secret(secrets_dir / "fernet_key", _fernet_key),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.password_file),
            "AIRFLOW__API_AUTH__JWT_SECRET": _secret(secrets_dir / "jwt_secret", lambda: secrets.token_urlsafe(32)),
            "AIRFLOW__API__SECRET_KEY": _secret(secrets_dir / "api_secret", lambda: secrets.token_urlsafe(32)),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(c.api_port),
            "AIRFLOW__API__BASE_URL": c.api_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": c.metadata_db,
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "120",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            # An idle scheduler loop sleeps this long before it looks at finished tasks and new asset events
            # again (default 1 s): each hop of the loop (features → scoring → drift) waited for it.
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.25",
            # A task queued this long is revoked and queued again by the scheduler (twice, then failed); see
            # CELERY_TASK_QUEUED_TIMEOUT for the Celery stack's shorter value.
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "600",
            # A task whose process died (a killed worker) is failed and retried after a minute, not five.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
            "AIRFLOW__TRIGGERER__CAPACITY": "50",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Each stack gets its own log-server port so several can run side by side (tests).
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(c.log_server_port),
            "AIRFLOW__CORE__ALLOWED_DESERIALIZATION_CLASSES_REGEXP": r"(airflow|loopline|loopline_airflow)\..*",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
            # No MLflow loader may unpickle a model artifact in any Loopline process (Loopline itself loads
            # only reviewed skops files, see loopline.tracking.load_model); docker-compose.yaml sets the same.
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            # Idle OpenMP threads sleep instead of spinning: on two cores shared by several task processes a
            # spinning HistGradientBoosting thread burns the CPU the others wait for (measured under load 7-9:
            # fitting the Jan-Feb model took 119 s wall / 39 s CPU by default, 22 s / 8.6 s passive).
            "OMP_WAIT_POLICY": "PASSIVE",
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
            # A worker takes one task per free slot, so a busy worker never sits on tasks another could run.
            env["AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER"] = "1"
            # A killed worker's messages stay unacked in Redis for the visibility timeout (24 h). A task it was
            # running is retried after the heartbeat timeout; a task whose message it had received but not yet
            # started is still "queued" for Airflow, and only the stuck-in-queued check sends it again.
            env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"] = str(CELERY_TASK_QUEUED_TIMEOUT)
            env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL"] = str(CELERY_TASK_QUEUED_CHECK_INTERVAL)
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
        self._attached.pop(name, None)
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
                        fh.write(f"\n=== loopline_dev.stack: {name} exited with {proc.returncode}; "
                                 f"restart {count + 1} ===\n")
                    self._spawn(name, *self.command(name))

        self._watchdog = threading.Thread(target=watch, name="loopline-stack-watchdog", daemon=True)
        self._watchdog.start()

    def _run(self, name: str, args: list[str], env: dict[str, str], timeout: float = 600) -> None:
        logs = self.config.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            done = subprocess.run(args, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, check=False)
        if done.returncode != 0:
            raise StackError(f"{' '.join(args[:3])} failed (exit {done.returncode}); see {logs / f'{name}.log'}")

    @property
    def components(self) -> list[str]:
        """The long-running processes of this topology, in start order."""
        return ["mlflow", "api-server", "scheduler", "dag-processor", "triggerer", *self.config.worker_names]

    def command(self, name: str, env: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
        """Arguments and environment of one component (the same on first start and on every restart)."""
        c = self.config
        env = dict(env or self.env())
        airflow = str(self.bin / "airflow")
        preload = "1" if c.preload else "0"
        if name == "mlflow":
            return self._mlflow_server(env)
        if name == "api-server":
            if c.metadata_db.startswith("sqlite"):
                # The api-server commits its audit log (``action_logging``) from an async dependency, on the
                # event loop, while the sync handlers' sessions commit via that same loop: when a handler holds
                # SQLite's write lock, the loop waits on the lock its holder cannot release, for the whole busy
                # timeout (measured: a PUT /backfills/{id}/pause stalled every task's execution-API call for
                # 61 s and failed with 500). A short timeout here breaks that deadlock before the Task SDK's
                # retries (1, 3, 7, 15 s) run out; the other components keep the long one.
                env = {**env, "LOOPLINE_SQLITE_TIMEOUT": str(API_SERVER_SQLITE_TIMEOUT)}
            return [airflow, "api-server", "--host", "127.0.0.1", "--port", str(c.api_port)], env
        # Every process shares the stack's log folder with the api-server, which reads task and trigger logs
        # from it: no log servers (``-s``), since Airflow's bind every interface and the stack stays on loopback.
        if name == "scheduler":  # the LocalExecutor forks task processes from the scheduler: warm it
            local = c.executor == "LocalExecutor"
            return [airflow, "scheduler", "--skip-serve-logs"], {
                **env, "LOOPLINE_PRELOAD": preload if local else "0", **(self.mlflow_task_env() if local else {})}
        if name == "triggerer":
            return [airflow, "triggerer", "--skip-serve-logs"], env
        if name == "dag-processor":
            return [airflow, name], env
        if name in c.worker_names:
            return [airflow, "celery", "worker", "--celery-hostname", f"{self.celery_hostname(name)}@%h",
                    "--concurrency", str(c.celery_concurrency), "--skip-serve-logs"], \
                {**env, "LOOPLINE_PRELOAD": preload, **self.mlflow_task_env()}
        raise StackError(f"{name!r} is not a component of this stack; components: {', '.join(self.components)}")

    def _mlflow_server(self, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """``mlflow server``: its backend URI and secrets in its environment, where ``ps`` does not show them
        (the CLI reads ``MLFLOW_BACKEND_STORE_URI`` and ``MLFLOW_ARTIFACTS_DESTINATION``); none of Airflow's."""
        c = self.config
        server_env = {k: v for k, v in env.items() if not k.startswith("AIRFLOW")}
        server_env.update({"MLFLOW_BACKEND_STORE_URI": c.mlflow_backend,
                           "MLFLOW_ARTIFACTS_DESTINATION": self.settings.mlflow_artifact_root})
        args = [str(self.bin / "mlflow"), "server", "--serve-artifacts", "--host", "127.0.0.1",
                "--port", str(c.mlflow_port), "--workers", "1"]
        if c.mlflow_auth:
            args += ["--app-name", "basic-auth"]
            server_env.update({
                # basic_auth.ini names the users' database; the admin is created from these on first start.
                "MLFLOW_AUTH_CONFIG_PATH": str(self.mlflow_auth_config),
                "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_USER,
                "MLFLOW_AUTH_ADMIN_PASSWORD": self.mlflow_password(),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret(self.secrets_dir / "mlflow_flask_secret",
                                                          lambda: secrets.token_urlsafe(32)),
            })
        return args, server_env

    @property
    def secrets_dir(self) -> Path:
        return self.config.home / "secrets"

    @property
    def mlflow_auth_config(self) -> Path:
        return self.secrets_dir / "mlflow_basic_auth.ini"

    def mlflow_password(self) -> str:
        """The password of the stack's MLflow user (generated once per home)."""
        return _secret(self.secrets_dir / "mlflow_password", lambda: secrets.token_urlsafe(24))

    def mlflow_credentials(self) -> dict[str, str]:
        """``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` for a process that calls this stack's MLflow server with
        Loopline's core functions (a task, the e2e tests); empty when the server has no authentication."""
        if not self.config.mlflow_auth:
            return {}
        return {"MLFLOW_TRACKING_USERNAME": MLFLOW_USER, "MLFLOW_TRACKING_PASSWORD": self.mlflow_password()}

    def mlflow_task_env(self) -> dict[str, str]:
        """What the processes that run tasks get to reach MLflow: the credentials for the core functions and
        the ``mlflow_default`` connection (with the same user) for ``MLflowHook``."""
        if not self.config.mlflow_auth:
            return {}
        conn = {"conn_type": "mlflow", "host": self.config.mlflow_url, "login": MLFLOW_USER,
                "password": self.mlflow_password()}
        return {**self.mlflow_credentials(), f"AIRFLOW_CONN_{MLFLOW_CONN_ID.upper()}": json.dumps(conn)}

    def _write_mlflow_auth_config(self) -> None:
        # May hold the users' database URL with its password: in the secrets folder, owner-only.
        private_dir(self.secrets_dir)
        write_private(self.mlflow_auth_config, (
            "[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {self.config.mlflow_auth_db}\n"
            f"admin_username = {MLFLOW_USER}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        ))

    def start(self, timeout: float = 240) -> Stack:
        c = self.config
        c.airflow_home.mkdir(parents=True, exist_ok=True)
        env = self.env()
        for url in c.databases:
            ensure_postgres_database(url)
        if c.mlflow_auth:
            self._write_mlflow_auth_config()
        self._write_local_settings()
        self._write_admin_password()
        if c.mlflow_backend.startswith("sqlite:///"):
            _sqlite_wal(Path(c.mlflow_backend.removeprefix("sqlite:///")))
        self._run("airflow-db-migrate", [str(self.bin / "airflow"), "db", "migrate"], env)
        for name in self.components:
            self._spawn(name, *self.command(name, env))
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self, name: str, *, kill: bool = False, timeout: float = 240) -> None:
        """Stop one component (SIGTERM, or SIGKILL with ``kill=True``) if it runs, start it again, wait until
        the stack is healthy."""
        if name in self.pids():
            self.kill(name, graceful=not kill)
        self._spawn(name, *self.command(name))
        self.wait_healthy(timeout)

    def kill(self, name: str, *, graceful: bool = False) -> None:
        """Stop one component with every process it started: a crash (SIGKILL) unless ``graceful``."""
        pid = self.pids().get(name)
        if pid is None:
            raise StackError(f"{name!r} is not running in this stack; running: {', '.join(self.pids())}")
        self._held.add(name)
        try:
            if graceful:
                stop_processes({name: pid}, grace=30)
            else:
                kill_tree(pid)
                deadline = time.monotonic() + 10
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.2)
            if name in self.procs:
                self.procs[name].wait(timeout=5)
        finally:
            self._held.discard(name)
        self.procs.pop(name, None)
        self._attached.pop(name, None)
        self._write_state()

    def pids(self) -> dict[str, int]:
        """Process-group leaders of the running components (started here or found in ``stack.json``)."""
        return {**self._attached, **{n: p.pid for n, p in self.procs.items()}}

    @classmethod
    def attach(cls, home: Path) -> Stack:
        """The stack another command started in ``home`` (``make stack``), to restart or stop parts of it."""
        state_file = Path(home).resolve() / "stack.json"
        if not state_file.exists():
            raise StackError(f"no stack recorded in {state_file}; start one with `make stack`")
        state = json.loads(state_file.read_text())
        config = _config_from_state(state["config"])
        stack = cls(config, Settings.from_env(state.get("settings", {})))
        stack._attached = {k: int(v) for k, v in state["pids"].items()}
        return stack

    def _write_admin_password(self) -> None:
        # SimpleAuthManager generates a missing user's password and prints it to the api-server's log; the
        # stack writes it first, to a file only the owner can read, so no log ever holds it.
        if not self.password_file.exists():
            write_private(self.password_file, json.dumps({"admin": secrets.token_urlsafe(16)}) + "\n")

    def _write_local_settings(self) -> None:
        # Airflow imports ``airflow_local_settings`` from $AIRFLOW_HOME/config in every process; ours only
        # pre-imports heavy libraries where LOOPLINE_PRELOAD=1 (the process that forks task processes).
        config_dir = self.config.airflow_home / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        text = ('"""Written by loopline_dev.stack: SQLite lock timeout, and warm the processes that fork tasks."""\n'
                "import os\n\n"
                "connect_args = {\"timeout\": float(os.environ.get(\"LOOPLINE_SQLITE_TIMEOUT\", \"60\"))}\n\n"
                'if os.environ.get("LOOPLINE_PRELOAD") == "1":\n'
                "    from loopline_airflow.preload import preload\n\n"
                "    preload()\n")
        if self.config.metadata_db.startswith("sqlite"):
            text += SQLITE_SYNCHRONOUS_NORMAL
        (config_dir / "airflow_local_settings.py").write_text(text)

    def celery_hostname(self, worker: str) -> str:
        """Celery node name prefix of a worker: unique per stack home, so two stacks never mix workers."""
        tag = hashlib.sha1(str(self.config.home).encode()).hexdigest()[:6]
        return f"loopline-{tag}-{worker.removeprefix('celery-')}"

    def celery_workers_answering(self) -> set[str]:
        """The stack's workers that answer on the broker (``airflow celery list-workers``)."""
        done = subprocess.run([str(self.bin / "airflow"), "celery", "list-workers", "--output", "json"],
                              env=self.env(), capture_output=True, text=True, timeout=120, check=False)
        try:
            listed = {str(w["worker_name"]) for w in json.loads(done.stdout or "[]")}
        except ValueError:
            return set()
        return {w for w in self.config.worker_names
                if any(n.startswith(f"{self.celery_hostname(w)}@") for n in listed)}

    def wait_healthy(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        checks = {"mlflow": f"{self.config.mlflow_url}/health",
                  "api-server": f"{self.config.api_url}/api/v2/monitor/health"}
        pending = set(checks) | {"scheduler", "triggerer", "dag_processor"} | set(self.config.worker_names)
        while pending and time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None and name not in self._held:
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
            workers = pending & set(self.config.worker_names)
            if workers and not pending - workers:  # ask the broker once the rest is up (a CLI call costs ~5 s)
                pending -= self.celery_workers_answering()
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
                self._spawn(n, *self.command(n))
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
        stop_processes(self.pids(), grace)
        for p in self.procs.values():
            try:
                p.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self.procs.clear()
        self._attached.clear()
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
            "pids": self.pids(),
            "api_url": self.config.api_url,
            "mlflow_url": self.config.mlflow_url,
            "password_file": str(self.password_file),
            "config": json.loads(json.dumps(asdict(self.config), default=str)),
            "settings": self.settings.as_env(),
        }
        # The URLs of the configuration may hold passwords: owner-only, like the secrets.
        write_private(self.config.home / "stack.json", json.dumps(state, indent=2))


def stop_processes(pids: dict[str, int], grace: float = 20) -> None:
    """SIGTERM each process group, wait up to ``grace`` seconds, then SIGKILL what is left of each tree.

    The trees are listed before the first signal: a descendant in a group of its own (a task process) is
    re-parented when its parent exits and could no longer be found from the leader afterwards.
    """
    before = set().union(*(process_tree(pid) for pid in pids.values())) if pids else set()
    for pid in pids.values():
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        while time.monotonic() < deadline and (
                any(_alive(pid) for pid in pids.values()) or _running(before)):
            time.sleep(0.5)
    finally:  # even when a second Ctrl-C interrupts the grace period, nothing is left running
        for pid in pids.values():
            kill_tree(pid)
        for pid in _running(before):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _running(pids: set[int]) -> set[int]:
    table = _proc_table()
    return {pid for pid in pids if pid in table and table[pid][0] != "Z"}


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


def _proc_table() -> dict[int, tuple[str, int, int]]:
    """pid → (state, parent pid, process group) of every process on the machine."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue
        table[int(stat.parent.name)] = (fields[0], int(fields[1]), int(fields[2]))
    return table


def process_tree(leader: int) -> set[int]:
    """The live processes of the group led by ``leader`` and all their descendants.

    Descendants matter: Airflow's task supervisor puts each task process in a process group of its own, so
    signalling the group of a worker (or of the LocalExecutor's scheduler) alone would leave its tasks running.
    """
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = [pid for pid, (_, _, pgrp) in table.items() if pgrp == leader]
    tree: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, []))
    return {pid for pid in tree if table[pid][0] != "Z"}  # zombies only wait to be reaped


def kill_tree(leader: int) -> None:
    """SIGKILL every process of :func:`process_tree` — what a crashed machine or container does."""
    _signal_group(leader, signal.SIGKILL)
    for pid in process_tree(leader):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    """Whether any process of the group led by ``pid``, or any descendant of it, still runs."""
    return bool(process_tree(pid))


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


def _config_from_state(raw: dict[str, Any]) -> StackConfig:
    """Rebuild a :class:`StackConfig` from the JSON form ``stack.json`` keeps (paths and numbers as text)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(StackConfig):
        if f.name not in raw:
            continue
        value, kind = raw[f.name], str(f.type)
        values[f.name] = (Path(value) if kind == "Path" else int(value) if kind == "int"
                          else bool(value) if kind == "bool" else value)
    return StackConfig(**values)


# -- PostgreSQL databases of the production topology ------------------------------------------------------
def _split_db_url(url: str) -> tuple[str, str]:
    """``postgresql+psycopg2://user@host:5432/name`` → (libpq URL of the server's ``postgres`` DB, name)."""
    server, _, name = url.rpartition("/")
    if not name or not server.startswith("postgresql"):
        raise StackError(f"{mask_url(url)!r} is not a PostgreSQL database URL "
                         "(postgresql[+driver]://user@host:port/name)")
    return "postgresql://" + server.split("://", 1)[1] + "/postgres", name


def ensure_postgres_database(url: str) -> bool:
    """Create the database of ``url`` when it does not exist; True when it was created."""
    import psycopg2
    from psycopg2 import sql

    admin, name = _split_db_url(url)
    try:
        conn = psycopg2.connect(admin, connect_timeout=10)
    except psycopg2.OperationalError as err:
        raise StackError(f"cannot reach PostgreSQL for {name!r} at {admin.rsplit('@', 1)[-1]}: {err}".strip()) from err
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        conn.close()


def drop_postgres_database(url: str) -> None:
    """Drop the database of ``url`` (closing its connections first); nothing when it does not exist."""
    import psycopg2
    from psycopg2 import sql

    admin, name = _split_db_url(url)
    conn = psycopg2.connect(admin, connect_timeout=10)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


# -- Redis databases of throwaway stacks (tests, benchmarks) -------------------------------------------------
REDIS_CLAIM_KEY = "loopline:stack-claim"


def claim_redis_db(base_url: str = DEFAULT_REDIS_URL) -> str:
    """The URL of an empty database (15 down to 1) on the Redis server of ``base_url``, claimed for one stack.

    A test or benchmark stack gets a database of its own, so the keys Celery leaves (``_kombu.binding.*``,
    ``unacked``...) never mix with ``make stack``'s database 0 and :func:`release_redis_db` can remove them. The
    claim is a key set only if absent, so two stacks started side by side never pick the same database.
    """
    import redis

    parts = urllib.parse.urlsplit(base_url)
    for db in range(15, 0, -1):
        url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))
        client = redis.Redis.from_url(url)
        try:
            if not client.dbsize() and client.set(REDIS_CLAIM_KEY, str(os.getpid()), nx=True):
                return url
        finally:
            client.close()
    raise StackError(f"no empty Redis database (1-15) at {mask_url(base_url)} for the stack")


def release_redis_db(url: str) -> None:
    """Flush a database taken with :func:`claim_redis_db`; a database without the claim is left untouched."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        if client.exists(REDIS_CLAIM_KEY):
            client.flushdb()
    finally:
        client.close()


# -- command line: make stack / make stack-down ------------------------------------------------------------
def _production_config(args: argparse.Namespace) -> StackConfig:
    # LOOPLINE_* variables that are not settings (LOOPLINE_DRIFT_POLL_SECONDS, LOOPLINE_PROJECTS_PATH,
    # LOOPLINE_ALERT_WEBHOOK, ...) reach every process; the settings themselves come from Settings.from_env.
    fields = {f"LOOPLINE_{f.name.upper()}" for f in dataclasses.fields(Settings)}
    extra = {k: v for k, v in os.environ.items()
             if k.startswith("LOOPLINE_") and k not in fields and not k.startswith("LOOPLINE_STACK_")}
    return StackConfig.production(Path(args.home), database=args.database, pg_url=args.pg_url,
                                  redis_url=args.redis_url, workers=args.workers, concurrency=args.concurrency,
                                  extra_env=extra)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m loopline_dev.stack",
        description="The production topology as local processes: Airflow on PostgreSQL with CeleryExecutor on "
                    "Redis, api-server, scheduler, dag-processor, triggerer, Celery workers, MLflow on PostgreSQL.")
    p.add_argument("command", choices=["up", "down", "restart", "status"])
    p.add_argument("component", nargs="?", help="with restart: mlflow, api-server, scheduler, dag-processor, "
                                                "triggerer or celery-worker-N")
    p.add_argument("--home", default=os.environ.get("LOOPLINE_STACK_HOME", ".loopline/stack"))
    p.add_argument("--database", default=os.environ.get("LOOPLINE_STACK_DATABASE", "loopline"),
                   help="Airflow's metadata database; MLflow uses <database>_mlflow")
    p.add_argument("--pg-url", default=os.environ.get("LOOPLINE_STACK_PG_URL", DEFAULT_PG_URL))
    p.add_argument("--redis-url", default=os.environ.get("LOOPLINE_STACK_REDIS_URL", DEFAULT_REDIS_URL))
    p.add_argument("--workers", type=int, default=int(os.environ.get("LOOPLINE_STACK_WORKERS", "2")))
    p.add_argument("--concurrency", type=int, default=2, help="task slots per Celery worker")
    args = p.parse_args(argv)
    home = Path(args.home).resolve()
    if args.command == "down":
        print(f"stopped the stack in {home}" if stop_from_state(home) else f"no stack recorded in {home}")
        return 0
    if args.command == "status":
        state = home / "stack.json"
        if not state.exists():
            print(f"no stack recorded in {home}")
            return 1
        pids = json.loads(state.read_text())["pids"]
        for name, pid in pids.items():
            print(f"{name:<18} pid {pid:<8} {'running' if _alive(int(pid)) else 'STOPPED'}")
        return 0 if all(_alive(int(pid)) for pid in pids.values()) else 1
    if args.command == "restart":
        if not args.component:
            p.error("restart needs a component name")
        Stack.attach(home).restart(args.component)
        print(f"restarted {args.component}")
        return 0
    if (home / "stack.json").exists():
        raise StackError(f"a stack is already recorded in {home / 'stack.json'}; `make stack-down` first")
    stack = Stack(_production_config(args), Settings.from_env(home=home)).start()
    c = stack.config
    print(f"Airflow API and UI : {c.api_url}   (user admin, password in {stack.password_file})")
    print(f"MLflow             : {c.mlflow_url}   (user {MLFLOW_USER}, "
          f"password in {stack.secrets_dir / 'mlflow_password'})")
    # Database and broker URLs may hold passwords: printed masked.
    print(f"Metadata DB        : {mask_url(c.metadata_db)}    MLflow DB: {mask_url(c.mlflow_backend)}")
    print(f"Celery             : {c.celery_workers} workers x {c.celery_concurrency} slots on "
          f"{mask_url(c.broker_url)}")
    print(f"Logs               : {home / 'logs'}  — stop with `make stack-down`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
