"""A small client for Airflow's REST API v2: what a user (or ``make demo``) does to drive Loopline.

It authenticates with ``POST /auth/token`` (SimpleAuthManager or any auth manager that issues JWTs) and
sends the token as a Bearer header on every call. Standard library only.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowAPIError(RuntimeError):
    """The API answered with an error status; the message has the method, path, status and body."""

    def __init__(self, method: str, path: str, status: int, body: str, attempt: int = 0) -> None:
        self.status = status
        self.attempt = attempt  # 0: the first try; more: the call was sent again after no answer or a 5xx
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")


class AirflowClient:
    """``AirflowClient("http://127.0.0.1:8080", "admin", password)``."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout: float = 90, retries: int = 8) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self._credentials = (username, password)
        self._token = token

    # -- transport --------------------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            username, password = self._credentials
            body = self._send("POST", "/auth/token", {"username": username, "password": password}, auth=False)
            self._token = str(body["access_token"])
        return self._token

    def request(self, method: str, path: str, payload: Any = None, params: dict[str, Any] | None = None,
                *, idempotent: bool | None = None) -> Any:
        """One API call. ``idempotent`` (default: GET, PUT, PATCH, DELETE) says the call may be sent again
        when the server gave no answer or a transient error (the caller of a POST that names what it creates,
        like a run id, can say so and handle the 409 of a repeat)."""
        if params:
            path = f"{path}?{urllib.parse.urlencode(params, doseq=True)}"
        return self._send(method, path, payload, auth=True, idempotent=idempotent)

    def _send(self, method: str, path: str, payload: Any, auth: bool, idempotent: bool | None = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        if auth:
            req.add_header("Authorization", f"Bearer {self.token()}")
        if idempotent is None:
            idempotent = method in {"GET", "PUT", "PATCH", "DELETE"}
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    text = resp.read().decode()
                return json.loads(text) if text else None
            except urllib.error.HTTPError as err:
                body = err.read().decode(errors="replace")
                error = AirflowAPIError(method, path, err.code, body, attempt)
                # 503: the server is up but busy — nothing was done. 500 "Database error": the request's
                # transaction failed and was rolled back (on SQLite: a lock held past the busy timeout, see
                # loopline_dev.stack.API_SERVER_SQLITE_TIMEOUT); a call that may run twice is sent again.
                transient = err.code == 503 or (err.code == 500 and idempotent and "Database error" in body)
                if not transient or attempt == self.retries:
                    raise error from None
            except (TimeoutError, urllib.error.URLError, ConnectionError):
                # No answer (a request waiting on a database lock, a restarting server): only a call that
                # may safely run twice is sent again; a POST might have taken effect.
                if not idempotent or attempt == self.retries:
                    raise
            time.sleep(min(2.0 * (attempt + 1), 10.0))
        raise AssertionError("unreachable")

    # -- DAGs and runs ----------------------------------------------------------------------------------
    def dags(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/v2/dags", params={"limit": 100})["dags"])

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return dict(self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused}))

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None,
                run_id: str | None = None) -> dict[str, Any]:
        """Trigger a run. The run id (``manual__<now>`` unless given) makes the POST safe to send again: a
        repeat that finds the run its first attempt created returns that run."""
        run_id = run_id or f"manual__{dt.datetime.now(dt.UTC).isoformat()}"
        payload: dict[str, Any] = {"conf": conf or {}, "logical_date": logical_date, "dag_run_id": run_id}
        try:
            return dict(self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", payload, idempotent=True))
        except AirflowAPIError as err:
            if err.status == 409 and err.attempt > 0:
                return self.dag_run(dag_id, run_id)
            raise

    def dag_runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns",
                                params={"limit": 100, "offset": offset, **params})
            out.extend(page["dag_runs"])
            offset += len(page["dag_runs"])
            if not page["dag_runs"] or offset >= page["total_entries"]:
                return out

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"))

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        rid = urllib.parse.quote(run_id, safe="")
        return list(self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{rid}/taskInstances")["task_instances"])

    def all_task_instances(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        """Task instances of every run of ``dag_id`` (``params`` filter them, e.g. ``state="running"``), paged."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/~/taskInstances",
                                params={"limit": 100, "offset": len(out), **params})
            out.extend(page["task_instances"])
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        rid = urllib.parse.quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{rid}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.request("GET", path, params={"deserialize": "true"})["value"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 600, poll: float = 2) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in TERMINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(poll)

    # -- backfills --------------------------------------------------------------------------------------
    def create_backfill(self, dag_id: str, from_date: str, to_date: str, *, max_active_runs: int = 3,
                        reprocess_behavior: str = "completed", conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /api/v2/backfills`` for the data intervals starting ``from_date``..``to_date`` (inclusive)."""
        payload = {"dag_id": dag_id, "from_date": _ts(from_date), "to_date": _ts(to_date),
                   "max_active_runs": max_active_runs, "reprocess_behavior": reprocess_behavior,
                   "run_backwards": False, "dag_run_conf": conf or {}}
        return dict(self.request("POST", "/api/v2/backfills", payload))

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/v2/backfills/{backfill_id}"))

    def wait_backfill(self, backfill_id: int, timeout: float = 3600, poll: float = 3,
                      progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            bf = self.backfill(backfill_id)
            if bf.get("completed_at"):
                return bf
            if progress:
                progress(bf)
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill {backfill_id} not complete after {timeout:.0f}s")
            time.sleep(poll)

    # -- assets -----------------------------------------------------------------------------------------
    def asset_events(self, asset_name: str | None = None, **params: Any) -> list[dict[str, Any]]:
        query: dict[str, Any] = {"limit": 100, "order_by": "timestamp", **params}
        if asset_name is not None:
            assets = self.request("GET", "/api/v2/assets", params={"name_pattern": asset_name})["assets"]
            ids = [a["id"] for a in assets if a["name"] == asset_name]
            if not ids:
                return []
            query["asset_id"] = ids[0]
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.request("GET", "/api/v2/assets/events", params={**query, "offset": offset})
            out.extend(page["asset_events"])
            offset += len(page["asset_events"])
            if not page["asset_events"] or offset >= page["total_entries"]:
                return out


def _ts(day: str) -> str:
    return day if "T" in day else f"{day}T00:00:00Z"
