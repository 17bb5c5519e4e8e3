"""The local process topology without starting Airflow: configuration, state round trip, process trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
from loopline.settings import Settings
from loopline_dev.stack import (
    CELERY_TASK_QUEUED_CHECK_INTERVAL,
    CELERY_TASK_QUEUED_TIMEOUT,
    REDIS_CLAIM_KEY,
    Stack,
    StackConfig,
    StackError,
    _alive,
    _split_db_url,
    claim_redis_db,
    kill_tree,
    process_tree,
    release_redis_db,
    stop_processes,
)

pytestmark = pytest.mark.unit


def test_production_config_uses_postgres_celery_and_redis(tmp_path: Path) -> None:
    c = StackConfig.production(tmp_path, database="lp", pg_url="postgresql+psycopg2://u@127.0.0.1:5432",
                               redis_url="redis://127.0.0.1:6379/3", workers=3, concurrency=2)
    assert c.metadata_db == "postgresql+psycopg2://u@127.0.0.1:5432/lp"
    assert c.mlflow_backend == "postgresql+psycopg2://u@127.0.0.1:5432/lp_mlflow"
    assert c.mlflow_auth and c.mlflow_auth_db == "postgresql+psycopg2://u@127.0.0.1:5432/lp_mlflow_auth"
    assert c.databases == [c.metadata_db, c.mlflow_backend, c.mlflow_auth_db]
    assert c.worker_names == ["celery-worker-1", "celery-worker-2", "celery-worker-3"]
    assert c.parallelism == 6
    env = Stack(c, Settings(home=tmp_path)).env()
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/3"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{c.metadata_db}"
    assert env["LOOPLINE_MLFLOW_TRACKING_URI"] == c.mlflow_url
    assert StackConfig(home=tmp_path).databases == []  # the embedded default needs no PostgreSQL


def test_celery_stack_sends_a_dead_workers_unstarted_tasks_again_within_minutes(tmp_path: Path) -> None:
    """A SIGKILLed worker's received-but-unstarted messages stay unacked in Redis for the visibility timeout;
    the scheduler's stuck-in-queued check sends those tasks again, after 2 min on the Celery stack."""
    config = StackConfig.production(tmp_path / "p", workers=2, concurrency=2)
    env = Stack(config, Settings(home=tmp_path / "p")).env()
    assert env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"] == str(CELERY_TASK_QUEUED_TIMEOUT) == "120"
    assert env["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL"] == str(CELERY_TASK_QUEUED_CHECK_INTERVAL)
    assert CELERY_TASK_QUEUED_CHECK_INTERVAL < CELERY_TASK_QUEUED_TIMEOUT <= 180
    # Why a short timeout fails no task that legitimately waits: the scheduler queues no more tasks than the
    # workers have slots, and a worker holds no more messages than it has slots (late acks, prefetch 1).
    assert config.parallelism == config.celery_workers * config.celery_concurrency
    assert env["AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER"] == "1"
    assert env.get("AIRFLOW__CELERY__TASK_ACKS_LATE", "True") == "True"
    # Redis redelivers an unacked message after the visibility timeout: Airflow's 24 h stays, far above the
    # tasks' 30 min execution timeout, or a long retrain would be delivered to a second worker while it runs.
    assert not [k for k in env if "VISIBILITY_TIMEOUT" in k or k.startswith("AIRFLOW__CELERY_BROKER_TRANSPORT")]
    embedded = Stack(StackConfig(home=tmp_path / "e"), Settings(home=tmp_path / "e")).env()
    assert embedded["AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT"] == "600"
    assert "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL" not in embedded


class _FakeRedis:
    """The few Redis calls claim_redis_db / release_redis_db make, on in-memory databases."""

    dbs: ClassVar[dict[int, dict[str, str]]] = {}

    def __init__(self, db: int) -> None:
        self.data = self.dbs.setdefault(db, {})

    @classmethod
    def from_url(cls, url: str) -> _FakeRedis:
        assert url.startswith("redis://127.0.0.1:6380/"), url
        return cls(int(url.rsplit("/", 1)[1]))

    def dbsize(self) -> int:
        return len(self.data)

    def set(self, key: str, value: str, nx: bool = False) -> bool:
        if nx and key in self.data:
            return False
        self.data[key] = value
        return True

    def exists(self, key: str) -> int:
        return int(key in self.data)

    def flushdb(self) -> None:
        self.data.clear()

    def close(self) -> None:
        pass


def test_redis_db_is_claimed_empty_and_flushed_only_when_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    import redis

    monkeypatch.setattr(redis, "Redis", _FakeRedis)
    _FakeRedis.dbs = {0: {"_kombu.binding.default": "make stack's"}, 15: {"someone": "else"}}
    first = claim_redis_db("redis://127.0.0.1:6380/0")
    second = claim_redis_db("redis://127.0.0.1:6380/0")  # a stack started beside it gets another database
    assert (first, second) == ("redis://127.0.0.1:6380/14", "redis://127.0.0.1:6380/13")
    _FakeRedis.dbs[14].update({"_kombu.binding.default": "x", "unacked": "y"})  # what a Celery stack leaves
    release_redis_db(first)
    assert _FakeRedis.dbs[14] == {} and REDIS_CLAIM_KEY in _FakeRedis.dbs[13]
    release_redis_db("redis://127.0.0.1:6380/0")  # never claimed: left alone
    release_redis_db("redis://127.0.0.1:6380/15")
    assert _FakeRedis.dbs[0] and _FakeRedis.dbs[15]
    _FakeRedis.dbs = {db: {"k": "v"} for db in range(16)}
    with pytest.raises(StackError, match="no empty Redis database"):
        claim_redis_db("redis://127.0.0.1:6380/0")


def test_every_component_listens_on_loopback_only(tmp_path: Path) -> None:
    stack = Stack(StackConfig.production(tmp_path), Settings(home=tmp_path))
    commands = {name: stack.command(name)[0] for name in stack.components}
    assert commands["mlflow"][commands["mlflow"].index("--host") + 1] == "127.0.0.1"
    assert commands["api-server"][commands["api-server"].index("--host") + 1] == "127.0.0.1"
    for name in ("scheduler", "triggerer", "celery-worker-1", "celery-worker-2"):
        assert "--skip-serve-logs" in commands[name], name  # Airflow's log servers bind every interface
    with pytest.raises(StackError, match="not a component"):
        stack.command("flower")


def test_state_file_rebuilds_the_stack_without_secrets(tmp_path: Path) -> None:
    config = StackConfig.production(tmp_path, database="lp", workers=2, extra_env={"LOOPLINE_DRIFT_POLL_SECONDS": "3"})
    stack = Stack(config, Settings(home=tmp_path, model_name="m1"))
    env = stack.env()
    stack._write_state()
    text = (tmp_path / "stack.json").read_text()
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert env[key] not in text, key
    again = Stack.attach(tmp_path)
    assert again.config == config
    assert again.settings.model_name == "m1"
    assert again.settings.mlflow_tracking_uri == config.mlflow_url
    assert again.env() == env  # same secrets (kept in files), same ports, same configuration
    assert json.loads(text)["pids"] == {}


def test_split_db_url_names_the_bad_url() -> None:
    assert _split_db_url("postgresql+psycopg2://u@h:5432/db") == ("postgresql://u@h:5432/postgres", "db")
    with pytest.raises(StackError, match="not a PostgreSQL database URL"):
        _split_db_url("sqlite:////tmp/x.db")
    with pytest.raises(StackError) as err:
        _split_db_url("mysql://u:hunter2@h/db")
    assert "hunter2" not in str(err.value) and "u:***@h" in str(err.value)


# -- secrets: MLflow behind authentication, credentials per component, nothing readable by others ------------
PG_WITH_PASSWORD = "postgresql+psycopg2://lp:pg-Secret-1@127.0.0.1:5432"


def _secret_stack(tmp_path: Path) -> Stack:
    config = StackConfig.production(tmp_path, database="lp", pg_url=PG_WITH_PASSWORD,
                                    redis_url="redis://:redis-Secret-2@127.0.0.1:6379/0")
    return Stack(config, Settings(home=tmp_path))


def test_mlflow_server_runs_basic_auth_with_its_secrets_in_its_environment_only(tmp_path: Path) -> None:
    stack = _secret_stack(tmp_path)
    args, env = stack.command("mlflow")
    assert args[args.index("--app-name") + 1] == "basic-auth"
    # What `ps` shows holds no password and no database URL: MLflow's CLI reads them from its environment.
    cmdline = " ".join(args)
    for secret in ("pg-Secret-1", stack.mlflow_password(), "postgresql", "--backend-store-uri"):
        assert secret not in cmdline, secret
    assert env["MLFLOW_BACKEND_STORE_URI"] == stack.config.mlflow_backend
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == stack.settings.mlflow_artifact_root
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == stack.mlflow_password()
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    # None of Airflow's secrets, and no client credentials, reach the MLflow server.
    assert not [k for k in env if k.startswith("AIRFLOW") or k.startswith("MLFLOW_TRACKING_")]
    airflow_env = stack.env()
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        assert airflow_env[key] not in env.values(), key
    # The basic-auth config names the users' database; it is written owner-only into the secrets folder.
    stack._write_mlflow_auth_config()
    ini = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
    assert ini.parent == tmp_path / "secrets" and ini.stat().st_mode & 0o777 == 0o600
    assert f"database_uri = {PG_WITH_PASSWORD}/lp_mlflow_auth" in ini.read_text()
    assert "admin_password" not in ini.read_text()


def test_only_the_processes_that_run_tasks_get_the_mlflow_credentials(tmp_path: Path) -> None:
    stack = _secret_stack(tmp_path)
    password = stack.mlflow_password()
    for name in stack.components:
        env = stack.command(name)[1]
        holders = {k for k, v in env.items() if password in v}
        if name.startswith("celery-worker-"):
            assert holders == {"MLFLOW_TRACKING_PASSWORD", "AIRFLOW_CONN_MLFLOW_DEFAULT"}, name
            assert env["MLFLOW_TRACKING_USERNAME"] == "admin"
            conn = json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
            assert conn == {"conn_type": "mlflow", "host": stack.config.mlflow_url, "login": "admin",
                            "password": password}
            assert "MLFLOW_AUTH_CONFIG_PATH" not in env and "MLFLOW_AUTH_ADMIN_PASSWORD" not in env
        elif name == "mlflow":
            assert holders == {"MLFLOW_AUTH_ADMIN_PASSWORD"}
        else:  # api-server, scheduler (Celery runs the tasks), dag-processor, triggerer
            assert not holders and "MLFLOW_TRACKING_USERNAME" not in env, name
    assert stack.mlflow_credentials() == {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
    # The embedded topology (make demo) keeps an open MLflow on loopback; its LocalExecutor scheduler would be
    # the process to get credentials.
    embedded = Stack(StackConfig(home=tmp_path / "e"), Settings(home=tmp_path / "e"))
    assert "--app-name" not in embedded.command("mlflow")[0] and embedded.mlflow_credentials() == {}
    local = Stack(StackConfig(home=tmp_path / "l", mlflow_auth=True), Settings(home=tmp_path / "l"))
    assert local.command("scheduler")[1]["MLFLOW_TRACKING_PASSWORD"] == local.mlflow_password()


def test_caller_credentials_are_not_inherited_by_the_components(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "callers-own")
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DEFAULT", "mlflow://x:callers-own@h")
    stack = _secret_stack(tmp_path)
    for name in stack.components:
        assert "callers-own" not in json.dumps(stack.command(name)[1]), name


def test_secrets_and_state_are_created_owner_only_whatever_the_umask(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file that may hold a secret is created 0600 by os.open (no moment when another user could read
    it, even with umask 000) and its folder is 0700; nothing is chmod-ed after the fact."""
    created: dict[str, int] = {}
    real_open = os.open

    def spy(path, flags, mode=0o777, *args, **kwargs):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, mode, *args, **kwargs)
        if flags & os.O_CREAT:
            created[Path(path).name] = os.fstat(fd).st_mode & 0o777  # the mode at the instant of creation
        return fd

    def no_chmod(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"{self} chmod-ed after creation")

    monkeypatch.setattr(os, "open", spy)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    old_umask = os.umask(0)
    try:
        stack = _secret_stack(tmp_path)
        stack.env()
        stack.command("mlflow")
        stack._write_admin_password()
        stack._write_mlflow_auth_config()
        stack._write_state()
    finally:
        os.umask(old_umask)
    secrets_dir = tmp_path / "secrets"
    names = {"fernet_key", "jwt_secret", "api_secret", "mlflow_password", "mlflow_flask_secret",
             "mlflow_basic_auth.ini"}
    assert {p.name for p in secrets_dir.iterdir()} == names  # no temporary file left behind
    assert secrets_dir.stat().st_mode & 0o777 == 0o700
    files = [*(secrets_dir / n for n in names), stack.password_file, tmp_path / "stack.json"]
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o600, path
    # Each was written through a temporary file created 0600, then renamed over the final name.
    assert created and set(created.values()) == {0o600}, created
    assert {n.split(".")[1] for n in created} >= {*names - {"mlflow_basic_auth.ini"}, "stack"}
    # stack.json holds the configuration's URLs (passwords included) but none of the generated secrets.
    text = (tmp_path / "stack.json").read_text()
    assert "pg-Secret-1" in text
    assert not [p.name for p in secrets_dir.iterdir() if p.read_text().strip() in text]


def test_a_wider_secrets_folder_from_an_older_stack_is_narrowed(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir(mode=0o755)
    (tmp_path / "secrets").chmod(0o755)
    _secret_stack(tmp_path).env()
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700


def test_make_stack_prints_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from loopline_dev import stack as stack_module

    monkeypatch.setattr(stack_module.Stack, "start", lambda self, timeout=240: self)
    stack_module.main(["up", "--home", str(tmp_path), "--pg-url", PG_WITH_PASSWORD,
                       "--redis-url", "redis://:redis-Secret-2@127.0.0.1:6379/0"])
    out = capsys.readouterr().out
    assert "pg-Secret-1" not in out and "redis-Secret-2" not in out
    assert "lp:***@127.0.0.1:5432" in out and "redis://:***@127.0.0.1:6379/0" in out
    assert "mlflow_password" in out  # where the MLflow password is, not the password


GRANDCHILD = r"""
import os, subprocess, sys, time
# Like Airflow's task supervisor: the task process goes into a process group of its own.
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], process_group=0)
print(child.pid, flush=True)
time.sleep(120)
"""


def test_kill_tree_reaches_descendants_in_their_own_process_group() -> None:
    leader = subprocess.Popen([sys.executable, "-c", GRANDCHILD], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert leader.stdout is not None
    grandchild = int(leader.stdout.readline())
    assert os.getpgid(grandchild) != leader.pid  # not reachable by signalling the leader's group
    assert {leader.pid, grandchild} <= process_tree(leader.pid)
    kill_tree(leader.pid)
    leader.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(leader.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(leader.pid)


def test_stop_processes_leaves_nothing_running() -> None:
    leader = subprocess.Popen([sys.executable, "-c", GRANDCHILD], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert leader.stdout is not None
    grandchild = int(leader.stdout.readline())
    stop_processes({"x": leader.pid}, grace=2)
    leader.wait(timeout=10)
    time.sleep(0.5)
    assert grandchild not in process_tree(leader.pid)
    assert _zombie_or_gone(grandchild)  # orphans are reaped by init; a zombie no longer runs


def _zombie_or_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_sqlite_lock_timeout_is_short_for_the_api_server_only(tmp_path: Path) -> None:
    """The api-server's audit-log commit can deadlock with its own handlers on SQLite for the whole busy
    timeout: its timeout must end that well inside the Task SDK's retries; the other components wait long."""
    stack = Stack(StackConfig(home=tmp_path), Settings(home=tmp_path))
    stack._write_local_settings()
    timeouts = {}
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        _, env = stack.command(name)
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"] == "airflow_local_settings.connect_args"
        probe = "import json, airflow_local_settings as s; print(json.dumps(s.connect_args))"
        out = subprocess.run([sys.executable, "-c", probe],
                             env={**env, "PYTHONPATH": str(stack.config.airflow_home / "config"),
                                  "LOOPLINE_PRELOAD": "0"},
                             capture_output=True, text=True, check=True).stdout
        timeouts[name] = json.loads(out)["timeout"]
    assert timeouts == {"api-server": 8.0, "scheduler": 60.0, "dag-processor": 60.0, "triggerer": 60.0}
    production = Stack(StackConfig.production(tmp_path / "p"), Settings(home=tmp_path / "p"))
    assert "LOOPLINE_SQLITE_TIMEOUT" not in production.command("api-server")[1]


def test_the_embedded_sqlite_files_commit_without_an_fsync_each(tmp_path: Path) -> None:
    """Airflow's SQLite connections (sync and async) get synchronous=NORMAL from airflow_local_settings, beside
    the WAL mode Airflow sets; MLflow's file is in WAL mode before its server opens it. PostgreSQL: untouched."""
    from loopline_dev.stack import _sqlite_wal

    stack = Stack(StackConfig(home=tmp_path), Settings(home=tmp_path))
    stack._write_local_settings()
    probe = r"""
import asyncio, json, sys
import airflow_local_settings  # noqa: F401  (what Airflow imports before it connects)
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine
with create_engine(f"sqlite:///{sys.argv[1]}").connect() as c:
    sync_mode = c.execute(text("PRAGMA synchronous")).scalar()
async def main():
    engine = create_async_engine(f"sqlite+aiosqlite:///{sys.argv[1]}")
    async with engine.connect() as c:
        mode = (await c.execute(text("PRAGMA synchronous"))).scalar()
    await engine.dispose()
    return mode
print(json.dumps([sync_mode, asyncio.run(main())]))
"""
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "probe.db")],
                         env={**os.environ, "PYTHONPATH": str(stack.config.airflow_home / "config"),
                              "LOOPLINE_PRELOAD": "0"}, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [1, 1]  # NORMAL (SQLite's default is 2, FULL)
    production = Stack(StackConfig.production(tmp_path / "p"), Settings(home=tmp_path / "p"))
    production._write_local_settings()
    assert "synchronous" not in (production.config.airflow_home / "config" / "airflow_local_settings.py").read_text()

    mlflow_db = tmp_path / "mlflow" / "mlflow.db"
    _sqlite_wal(mlflow_db)
    import sqlite3
    with sqlite3.connect(mlflow_db) as db:  # another connection, as the MLflow server opens it
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
