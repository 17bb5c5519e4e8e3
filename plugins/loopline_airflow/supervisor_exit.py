"""Notice a task process's exit as soon as it happens, not up to ``[workers] min_heartbeat_interval`` later.

Airflow 3.3.2's task supervisor (``airflow.sdk.execution_time.supervisor.ActivitySubprocess``) loops on a
``select`` over the task process's sockets with a timeout of ``min_heartbeat_interval`` (5 s by default), and
checks whether the process exited after each wake-up. A task process closes its sockets while it shuts
down, a few milliseconds before it exits. When the last socket closes before the exit, the ``select`` has no
file left to wake it and sleeps out its whole timeout: the slot stays taken for up to 5 s after the task ended
(measured in session 8: each slow workload finished 5.04 s after its task's last log line; with the interval
at 1 s, 30 days of empty runs went from 96 s to 48 s).

The fix here: while the process is alive and no socket is left to watch, wait on the process itself
(``psutil.Process.wait`` with the same timeout) instead of on an empty selector. Nothing else changes: a
process that keeps running still wakes the loop at the same timeout for its heartbeat, and the exit code is
the one the supervisor reads anyway (psutil keeps it). With this the heartbeat interval can stay at Airflow's
default instead of being lowered to 1 s, which made every running task call the api-server every second.

:func:`install` patches the class once, in the process that runs the supervisors (the LocalExecutor's
scheduler, which forks its workers; a Celery worker), from :mod:`loopline_airflow.preload`. If a later
Airflow no longer has the method or its signature changed, it does nothing and logs why.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger(__name__)

_EXPECTED = ["self", "max_wait_time", "raise_on_timeout", "expect_signal"]
_PATCHED = "_loopline_waits_on_exit"


def install() -> bool:
    """Patch ``ActivitySubprocess._service_subprocess``; True if the patch is in place after the call."""
    try:
        from airflow.sdk.execution_time.supervisor import ActivitySubprocess
    except ImportError as exc:
        log.warning("loopline: supervisor exit patch not installed (%s)", exc)
        return False
    original = ActivitySubprocess._service_subprocess
    if getattr(original, _PATCHED, False):
        return True
    params = list(inspect.signature(original).parameters)
    if params != _EXPECTED or not hasattr(ActivitySubprocess, "_check_subprocess_exit"):
        log.warning("loopline: supervisor exit patch not installed: ActivitySubprocess._service_subprocess "
                    "takes %s, not %s (another Airflow version)", params, _EXPECTED)
        return False

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

    setattr(_service_subprocess, _PATCHED, True)
    _service_subprocess.__doc__ = original.__doc__
    ActivitySubprocess._service_subprocess = _service_subprocess  # type: ignore[method-assign]
    return True
