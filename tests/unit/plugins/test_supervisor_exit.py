"""loopline_airflow.supervisor_exit: the task supervisor notices its process's exit when no socket is left."""

from __future__ import annotations

import selectors
import sys
import time

import psutil
import pytest
from loopline_airflow import supervisor_exit

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
    assert supervisor_exit.install()
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
    assert supervisor_exit.install()
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

    assert supervisor_exit.install()
    patched = ActivitySubprocess._service_subprocess
    assert supervisor_exit.install()
    assert ActivitySubprocess._service_subprocess is patched


def test_another_signature_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.supervisor import ActivitySubprocess

    def other(self, timeout):  # a later Airflow's method
        return None

    monkeypatch.setattr(ActivitySubprocess, "_service_subprocess", other)
    assert not supervisor_exit.install()
    assert ActivitySubprocess._service_subprocess is other

