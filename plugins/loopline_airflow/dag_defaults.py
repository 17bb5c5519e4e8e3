"""What every Loopline DAG shares: owner, retries with exponential backoff, timeouts, the failure callback."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger("loopline.alerts")

START_DATE = dt.datetime(2013, 1, 1, tzinfo=dt.UTC)
TAGS = ["loopline", "mlops"]


def notify_failure(context: Context) -> None:
    """Log a failed task with what a person needs to act, and POST it to ``LOOPLINE_ALERT_WEBHOOK`` if set."""
    ti = context.get("ti")
    exc = context.get("exception")
    alert: dict[str, Any] = {
        "dag_id": getattr(ti, "dag_id", None),
        "task_id": getattr(ti, "task_id", None),
        "run_id": getattr(ti, "run_id", None),
        "try_number": getattr(ti, "try_number", None),
        "error": str(exc)[:2000] if exc else None,
    }
    log.error("Loopline task failed: %s", json.dumps(alert))
    url = os.environ.get("LOOPLINE_ALERT_WEBHOOK")
    if url:
        req = urllib.request.Request(url, data=json.dumps(alert).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=10).close()
        except OSError as err:  # an alert that cannot be delivered must not hide the original failure
            log.warning("could not deliver the failure alert to LOOPLINE_ALERT_WEBHOOK: %s", err)


def default_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": "loopline",
        "retries": 2,
        "retry_delay": dt.timedelta(seconds=20),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=10),
        "execution_timeout": dt.timedelta(minutes=30),
        "on_failure_callback": notify_failure,
    }
    args.update(overrides)
    return args
