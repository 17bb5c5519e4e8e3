"""loopline_airflow.supervisor_patches: the task supervisor notices its process's exit when no socket is left, and
sends no heartbeat right after its task's start."""

from __future__ import annotations

import selectors
import sys
import time
from typing import Any

import psutil
import pytest
from loopline_airflow import supervisor_patches

pytestmark = pytest.mark.unit


def _supervisor_of(proc: psutil.Popen):
    """An ActivitySubprocess in the state the supervisor is in once its task closed every socket."""
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess, PsutilTracker

    sup = object.__new__(ActivitySubprocess)
    sup.selector = selectors.DefaultSelector()  # nothing registered: every socket is closed
    sup._process = PsutilTracker(proc)
    sup._exit_code = None
    sup._process_exit_monotonic = None
    return sup


def test_an_exit_after_the_last_socket_closed_is_seen_at_once() -> None:
    assert supervisor_patches.install_exit_wait()
    proc = psutil.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    sup = _supervisor_of(proc)
    t = time.monotonic()
    code = None
    while code is None and time.monotonic() - t < 10:
        code = sup._service_subprocess(max_wait_time=5)  # Airflow's default heartbeat interval
    took = time.monotonic() - t
    assert code == 0
    assert took < 2, f"the exit was seen {took:.2f} s after the call (the process ran 0.3 s)"


def test_a_process_still_running_is_waited_for_no_longer_than_the_timeout() -> None:
    assert supervisor_patches.install_exit_wait()
    proc = psutil.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        sup = _supervisor_of(proc)
        t = time.monotonic()
        assert sup._service_subprocess(max_wait_time=0.2) is None  # alive: the heartbeat loop goes on
        assert time.monotonic() - t < 5
    finally:
        proc.kill()
        proc.wait()


def test_installing_twice_patches_once() -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    assert supervisor_patches.install_exit_wait()
    patched = ActivitySubprocess._service_subprocess
    assert supervisor_patches.install_exit_wait()
    assert ActivitySubprocess._service_subprocess is patched


def test_another_signature_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    def other(self, timeout):  # a later Airflow's method
        return None

    monkeypatch.setattr(ActivitySubprocess, "_service_subprocess", other)
    assert not supervisor_patches.install_exit_wait()
    assert ActivitySubprocess._service_subprocess is other



def test_the_first_heartbeat_waits_a_full_interval_after_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time import supervisor
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    started: list[dict[str, Any]] = []

    def on_child_started(self, *, ti, dag_rel_path, bundle_info, sentry_integration):  # Airflow 3.3.2's signature
        started.append({"ti": ti})  # the original marks the task running through the API here

    monkeypatch.setattr(ActivitySubprocess, "_on_child_started", on_child_started)
    assert supervisor_patches.install_first_heartbeat_wait()

    class Client:
        def __init__(self) -> None:
            self.heartbeats = 0
            self.task_instances = self

        def heartbeat(self, ti_id: object, pid: int) -> None:
            self.heartbeats += 1

    sup = object.__new__(ActivitySubprocess)
    sup.client, sup.id, sup._terminal_state = Client(), "ti-1", None
    sup._process = type("P", (), {"pid": 1})()
    sup._on_child_started(ti="ti-1", dag_rel_path="d.py", bundle_info=None, sentry_integration="")
    assert started == [{"ti": "ti-1"}]
    sup._send_heartbeat_if_needed()
    assert sup.client.heartbeats == 0  # before: one right away, after the start had just been recorded
    sup._last_heartbeat_attempt -= supervisor.MIN_HEARTBEAT_INTERVAL
    sup._send_heartbeat_if_needed()
    assert sup.client.heartbeats == 1
