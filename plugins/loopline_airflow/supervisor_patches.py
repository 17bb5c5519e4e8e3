"""Two patches to Airflow 3.3.2's task supervisor (``airflow.sdk.execution_time.supervisor.ActivitySubprocess``)
that cut what every task costs the loop; each checks the method it replaces and stands down on another version.

1. **A task's exit is noticed at once, not up to ``[workers] min_heartbeat_interval`` later.** The supervisor
   loops on a ``select`` over the task process's sockets with a timeout of ``min_heartbeat_interval`` (5 s by
   default) and checks whether the process exited after each wake-up. A task process closes its sockets while
   it shuts down, a few milliseconds before it exits. When the last socket closes before the exit, the
   ``select`` has no file left to wake it and sleeps out its whole timeout: the slot stays taken for up to 5 s
   after the task ended (measured in session 8: each slow workload finished 5.04 s after its task's last log
   line; with the interval at 1 s, 30 days of empty runs went from 96 s to 48 s). Patched: while the process
   is alive and no socket is left to watch, the supervisor waits on the process itself (``psutil`` wait, same
   timeout). A process that keeps running still wakes the loop at the same timeout for its heartbeat, and the
   exit code is the one the supervisor reads anyway (psutil keeps it). So the heartbeat interval stays at
   Airflow's default instead of 1 s, which made every running task call the api-server every second.
2. **No heartbeat in the task's first interval.** The supervisor's first heartbeat went out right after the
   ``PATCH …/run`` that marked the task running (its last-attempt time starts at 0), which already records a
   heartbeat on the server: one ``PUT …/heartbeat`` per task, 773 of the 6,933 api-server requests of a Jan–Apr
   replay. Patched: the first one waits a full interval, as every later one does; a task of under 5 s sends
   none. (The server's answer to a heartbeat is also how a supervisor learns that its task was cleared or marked
   failed meanwhile: within the first interval it learns it ≤ 5 s later than before.)

:func:`install` patches the class once, in the process that runs the supervisors (the LocalExecutor's
scheduler, which forks its workers; a Celery worker), from :mod:`loopline_airflow.preload`. I found no upstream
issue for either.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_EXPECTED = ["self", "max_wait_time", "raise_on_timeout", "expect_signal"]
_EXPECTED_START = ["self", "ti", "dag_rel_path", "bundle_info", "sentry_integration"]
_PATCHED = "_loopline_patched"


def install() -> bool:
    """Both patches; True if both are in place after the call."""
    exit_wait = install_exit_wait()
    first_heartbeat = install_first_heartbeat_wait()
    return exit_wait and first_heartbeat


def _replace(method: str, expected: list[str], needs: str, what: str,
             wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> bool:
    """Replace ``ActivitySubprocess.<method>`` by ``wrap(original)`` once, if the original takes ``expected``
    and the class has ``needs``; True if the patch is in place after the call."""
    try:
        from airflow.sdk.execution_time.supervisor import ActivitySubprocess
    except ImportError as exc:
        log.warning("loopline: supervisor %s patch not installed (%s)", what, exc)
        return False
    original = getattr(ActivitySubprocess, method)
    if getattr(original, _PATCHED, False):
        return True
    params = list(inspect.signature(original).parameters)
    if params != expected or not hasattr(ActivitySubprocess, needs):
        log.warning("loopline: supervisor %s patch not installed: ActivitySubprocess.%s takes %s, not %s "
                    "(another Airflow version)", what, method, params, expected)
        return False
    patched = wrap(original)
    setattr(patched, _PATCHED, True)
    patched.__doc__ = original.__doc__
    setattr(ActivitySubprocess, method, patched)
    return True


def install_first_heartbeat_wait() -> bool:
    """Patch ``ActivitySubprocess._on_child_started`` (patch 2); True if the patch is in place after the call."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def _on_child_started(self: Any, **kwargs: Any) -> None:
            original(self, **kwargs)
            # The task is running and its start was a heartbeat: the next one is due an interval from now.
            self._last_heartbeat_attempt = time.monotonic()

        return _on_child_started

    return _replace("_on_child_started", _EXPECTED_START, "_last_heartbeat_attempt", "first-heartbeat", wrap)


def install_exit_wait() -> bool:
    """Patch ``ActivitySubprocess._service_subprocess`` (patch 1); True if the patch is in place after the call."""

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def _service_subprocess(self: Any, max_wait_time: float, raise_on_timeout: bool = False,
                                expect_signal: int | None = None) -> int | None:
            if self._exit_code is None and not self.selector.get_map():
                # Nothing left to select on: the process is shutting down. Wait for it, not for a socket.
                try:
                    self._process.wait(timeout=max(0.01, max_wait_time))
                except self._process.TimeoutExpired:
                    pass
                return self._check_subprocess_exit(raise_on_timeout=raise_on_timeout, expect_signal=expect_signal)
            return original(self, max_wait_time, raise_on_timeout, expect_signal)

        return _service_subprocess

    return _replace("_service_subprocess", _EXPECTED, "_check_subprocess_exit", "exit-wait", wrap)
