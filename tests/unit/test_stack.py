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
from loopline.stack import (
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
    assert c.databases == [c.metadata_db, c.mlflow_backend]
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
    config = StackConfig.production(tmp_path, database="lp", workers=2, extra_env={"LOOPLINE_RAW_SOURCE": "store"})
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
