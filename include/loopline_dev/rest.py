"""Airflow's REST API v2 through the official ``apache-airflow-client``: what the demo, the tests and the benchmarks
do to drive Loopline.

``AirflowClient`` authenticates with ``POST /auth/token`` (SimpleAuthManager or any auth manager that issues
JWTs) and hands the token to the official client as its access token. Each call goes through the client's typed
API (``DAGApi``, ``DagRunApi``, ``TaskInstanceApi``, ``XComApi``, ``BackfillApi``, ``AssetApi``) and is returned
as the plain JSON-shaped ``dict`` the server sent (datetimes as ISO strings, ``None`` kept), so callers index it
like the wire format. ``request()`` sends any other path through the same client's transport and auth.

What still goes raw, and why (everything else the demo, the e2e tests and the benchmarks call is typed):

- ``POST /auth/token`` (:meth:`AirflowClient.token`): the auth manager's route, not in the REST API v2 spec the
  client is generated from.
- ``GET /ui/partitioned_dag_runs`` (``loopline_dev.demo.queued_asset_events``, ``benchmarks/partitions_spike.py``):
  a private UI route; the client has no ``/ui/`` method at all.
- ``GET .../taskInstances/{task_id}/logs/{try_number}`` (:meth:`AirflowClient.task_log`) goes through the
  client's ``get_log_without_preload_content`` and reads the body as JSON itself: the typed ``get_log`` keeps
  only ``event`` and ``timestamp`` of each structured log line (its ``StructuredLogMessage`` drops ``level``,
  ``logger`` and ``error_detail``, where a failed task's exception text is).
- ``benchmarks/partitions_spike.py`` (a run's ``/clear`` and a trigger) and ``benchmarks/rest_client.py`` (raw
  paging, measured against the typed one on purpose) still call ``request()`` on endpoints the client has; the
  spike's clear could use :meth:`AirflowClient.clear_dag_run`, its trigger needs a ``partition_key`` that
  :meth:`AirflowClient.trigger` does not pass yet (``TriggerDAGRunPostBody`` has the field).

What the official client does not decide for us, this wrapper does: which calls may be sent again after no
answer or a transient error (see ``AirflowClient.request``), and that a failure is one ``AirflowAPIError`` naming
the method, path, status and body.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from airflow_client.client import ApiClient, ApiException, Configuration
from airflow_client.client.api.asset_api import AssetApi
from airflow_client.client.api.backfill_api import BackfillApi
from airflow_client.client.api.dag_api import DAGApi
from airflow_client.client.api.dag_run_api import DagRunApi
from airflow_client.client.api.task_instance_api import TaskInstanceApi
from airflow_client.client.api.x_com_api import XComApi
from airflow_client.client.models.backfill_post_body import BackfillPostBody
from airflow_client.client.models.bulk_dag_run_body import BulkDAGRunBody
from airflow_client.client.models.bulk_dag_run_clear_body import BulkDAGRunClearBody
from airflow_client.client.models.dag_patch_body import DAGPatchBody
from airflow_client.client.models.dag_run_clear_body import DAGRunClearBody
from airflow_client.client.models.reprocess_behavior import ReprocessBehavior
from airflow_client.client.models.trigger_dag_run_post_body import TriggerDAGRunPostBody
from pydantic import BaseModel

TERMINAL_RUN_STATES = {"success", "failed"}
PAGE = 100  # rows per page: the api-server's default maximum_page_limit
# Query parameters the API takes as a list; a single value given as a string is sent as a list of one.
# Query parameters the API takes as lists (``task_id`` is one string: get_task_instances takes a StrictStr).
_LIST_PARAMS = {"state", "run_type", "order_by", "dag_ids", "pool", "queue", "executor"}
T = TypeVar("T")


class AirflowAPIError(RuntimeError):
    """The API answered with an error status; the message has the method, path, status and body."""

    def __init__(self, method: str, path: str, status: int, body: str, attempt: int = 0) -> None:
        self.status = status
        self.attempt = attempt  # 0: the first try; more: the call was sent again after no answer or a 5xx
        super().__init__(f"{method} {path} -> HTTP {status}: {body[:500]}")


def _plain(model: BaseModel) -> dict[str, Any]:
    """A response model as the JSON object the server sent: ISO datetimes, enum values, ``None`` kept (the
    generated ``to_dict`` drops ``None`` fields, e.g. an asset-triggered run's ``logical_date``)."""
    return dict(model.model_dump(mode="json", by_alias=True))


def _lists(params: dict[str, Any]) -> dict[str, Any]:
    return {k: [v] if k in _LIST_PARAMS and isinstance(v, str) else v for k, v in params.items()}


class AirflowClient:
    """``AirflowClient("http://127.0.0.1:8080", "admin", password)``, or ``token=`` for a token you hold."""

    def __init__(self, base_url: str, username: str | None = None, password: str | None = None,
                 token: str | None = None, timeout: float = 90, retries: int = 8) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = retries
        self._credentials = (username, password)
        self._token = token
        # urllib3's own retries are off: which call may be sent twice is decided in _call, per call.
        self._client = ApiClient(Configuration(host=self.base_url, access_token=token, retries=False))
        self._dag = DAGApi(self._client)
        self._dag_run = DagRunApi(self._client)
        self._task_instance = TaskInstanceApi(self._client)
        self._xcom = XComApi(self._client)
        self._backfill = BackfillApi(self._client)
        self._asset = AssetApi(self._client)

    # -- transport --------------------------------------------------------------------------------------
    def token(self) -> str:
        """The JWT every call carries, from ``POST /auth/token`` on first use.

        Not in the official client: ``/auth/token`` belongs to the auth manager, not to the REST API v2 spec the
        client is generated from (no ``auth/token`` anywhere in ``airflow_client/client/api/``; its ``LoginApi``
        has only the browser redirects ``/api/v2/auth/login`` and ``/logout``). Sent through the client's
        transport by hand.
        """
        if self._token is None:
            username, password = self._credentials
            body = self._call("POST", "/auth/token", lambda: self._raw(
                "POST", "/auth/token", {"username": username, "password": password}, None, auth=False), False)
            self._token = str(body["access_token"])
            self._client.configuration.access_token = self._token
        return self._token

    def request(self, method: str, path: str, payload: Any = None, params: dict[str, Any] | None = None,
                *, idempotent: bool | None = None) -> Any:
        """One call to any path, through the official client's transport and auth, for what has no typed
        method here (a backfill's pause, a task's log, queued asset events). ``idempotent`` (default: GET, PUT,
        PATCH, DELETE) says the call may be sent again when the server gave no answer or a transient error (the
        caller of a POST that names what it creates, like a run id, can say so and handle the 409 of a repeat)."""
        self.token()
        return self._call(method, path, lambda: self._raw(method, path, payload, params, auth=True), idempotent)

    def _raw(self, method: str, path: str, payload: Any, params: dict[str, Any] | None, *, auth: bool) -> Any:
        query = list(_lists(params or {}).items())
        method, url, headers, body, _ = self._client.param_serialize(
            method=method, resource_path=path, query_params=query, body=payload,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["HTTPBearer"] if auth else [],
            collection_formats={k: "multi" for k, v in query if isinstance(v, list | tuple)})
        response = self._client.call_api(method, url, header_params=headers, body=body,
                                         _request_timeout=self.timeout)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(data) if data else None

    def _typed(self, method: str, path: str, call: Callable[[], T | None], idempotent: bool | None = None) -> T:
        self.token()
        answer = self._call(method, path, call, idempotent)
        if answer is None:  # a success status the client's spec has no response model for
            raise AirflowAPIError(method, path, 0, "a success answer apache-airflow-client did not deserialize")
        return answer

    def _call(self, method: str, path: str, call: Callable[[], T], idempotent: bool | None) -> T:
        if idempotent is None:
            idempotent = method in {"GET", "PUT", "PATCH", "DELETE"}
        for attempt in range(self.retries + 1):
            try:
                return call()
            except ApiException as err:
                body = err.body.decode(errors="replace") if isinstance(err.body, bytes) else str(err.body or "")
                status = int(err.status or 0)
                # 503: the server is up but busy — nothing was done. 500 "Database error": the request's
                # transaction failed and was rolled back (on SQLite: a lock held past the busy timeout, see
                # loopline_dev.stack.API_SERVER_SQLITE_TIMEOUT); a call that may run twice is sent again.
                transient = status == 503 or (status == 500 and idempotent and "Database error" in body)
                if not transient or attempt == self.retries:
                    raise AirflowAPIError(method, path, status, body, attempt) from None
            except (urllib3.exceptions.HTTPError, OSError) as err:
                # No answer (a request waiting on a database lock, a restarting server): only a call that
                # may safely run twice is sent again; a POST might have taken effect.
                if not idempotent or attempt == self.retries:
                    raise _no_answer(method, path, err) from err
            time.sleep(min(2.0 * (attempt + 1), 10.0))
        raise AssertionError("unreachable")

    # -- DAGs and runs ----------------------------------------------------------------------------------
    def dags(self) -> list[dict[str, Any]]:
        """Every DAG the api-server knows (paged)."""
        out: list[dict[str, Any]] = []
        while True:
            page = self._typed("GET", "/api/v2/dags", lambda: self._dag.get_dags(
                limit=PAGE, offset=len(out), _request_timeout=self.timeout))
            out.extend(_plain(d) for d in page.dags)
            if _last_page(len(page.dags), len(out), page.total_entries):
                return out

    def set_paused(self, dag_id: str, paused: bool) -> dict[str, Any]:
        return _plain(self._typed("PATCH", f"/api/v2/dags/{dag_id}", lambda: self._dag.patch_dag(
            dag_id, DAGPatchBody(is_paused=paused), _request_timeout=self.timeout)))

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None,
                run_id: str | None = None) -> dict[str, Any]:
        """Trigger a run. The run id (``manual__<now>`` unless given) makes the POST safe to send again: a
        repeat that finds the run its first attempt created returns that run."""
        run_id = run_id or f"manual__{dt.datetime.now(dt.UTC).isoformat()}"
        body = TriggerDAGRunPostBody.model_validate(
            {"conf": conf or {}, "logical_date": logical_date, "dag_run_id": run_id})
        try:
            return _plain(self._typed("POST", f"/api/v2/dags/{dag_id}/dagRuns", lambda: self._dag_run.trigger_dag_run(
                dag_id, body, _request_timeout=self.timeout), idempotent=True))
        except AirflowAPIError as err:
            if err.status == 409 and err.attempt > 0:
                return self.dag_run(dag_id, run_id)
            raise

    def dag_runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        """Runs of ``dag_id`` (``dag_id="~"``: of every DAG), filtered by ``params`` as the API's query
        parameters (``state=["failed"]``, ``run_type=["backfill"]``, ``logical_date_gte="2013-01-01T00:00:00Z"``),
        paged."""
        out: list[dict[str, Any]] = []
        query = _lists(params)
        while True:
            page = self._typed("GET", f"/api/v2/dags/{dag_id}/dagRuns", lambda: self._dag_run.get_dag_runs(
                dag_id, limit=PAGE, offset=len(out), **query, _request_timeout=self.timeout))
            out.extend(_plain(r) for r in page.dag_runs)
            if _last_page(len(page.dag_runs), len(out), page.total_entries):
                return out

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return _plain(self._typed("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", lambda: self._dag_run.get_dag_run(
            dag_id, run_id, _request_timeout=self.timeout)))

    def count_dag_runs(self, dag_id: str, **params: Any) -> int:
        """How many runs of ``dag_id`` (``"~"``: of every DAG) match ``params``, the API's query parameters
        (``dag_id_pattern="flights."``, ``state=["running"]``): the ``total_entries`` of a one-run page."""
        query, path = _lists(params), f"/api/v2/dags/{dag_id}/dagRuns"
        page = self._typed("GET", path, lambda: self._dag_run.get_dag_runs(
            dag_id, limit=1, **query, _request_timeout=self.timeout))
        if page.total_entries is None:  # the API leaves it out with cursor paging, which this call does not ask for
            raise AirflowAPIError("GET", path, 200, "an answer without total_entries")
        return int(page.total_entries)

    def clear_dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """Clear one run (``dry_run=False``: its tasks run again); the run as the server answers it. Sent again
        after no answer or a transient error: clearing twice leaves the same queued run."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/clear"
        answer = self._typed("POST", path, lambda: self._dag_run.clear_dag_run(
            dag_id, run_id, DAGRunClearBody(dry_run=False), _request_timeout=self.timeout), idempotent=True)
        return _any_of("POST", path, answer.actual_instance)

    def clear_dag_runs(self, dag_id: str, run_ids: list[str]) -> dict[str, Any]:
        """Clear several runs of ``dag_id`` in one transaction (``dry_run=False``); the server's answer. Sent
        again after no answer or a transient error (a database error rolls the whole clear back)."""
        path = f"/api/v2/dags/{dag_id}/clearDagRuns"
        body = BulkDAGRunClearBody(dry_run=False, dag_runs=[BulkDAGRunBody(dag_run_id=r) for r in run_ids])
        answer = self._typed("POST", path, lambda: self._dag_run.clear_dag_runs(
            dag_id, body, _request_timeout=self.timeout), idempotent=True)
        return _any_of("POST", path, answer.actual_instance)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The task instances of one run (paged)."""
        return self._task_instances(dag_id, run_id, {})

    def all_task_instances(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        """Task instances of every run of ``dag_id`` (``params`` filter them, e.g. ``state="running"``), paged."""
        return self._task_instances(dag_id, "~", _lists(params))

    def _task_instances(self, dag_id: str, run_id: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        while True:
            page = self._typed("GET", path, lambda: self._task_instance.get_task_instances(
                dag_id, run_id, limit=PAGE, offset=len(out), **query, _request_timeout=self.timeout))
            out.extend(_plain(t) for t in page.task_instances)
            if _last_page(len(page.task_instances), len(out), page.total_entries):
                return out

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, *, full_content: bool = True
                 ) -> dict[str, Any]:
        """One try's log, ``{"content": [...], "continuation_token": ...}`` as the server sent it.

        Through ``TaskInstanceApi.get_log_without_preload_content``: the typed ``get_log`` parses each log line
        into ``StructuredLogMessage``, which keeps ``event`` and ``timestamp`` only and drops the rest of the line
        (``level``, ``logger``, ``error_detail`` with the exception's text), so the body is read as JSON here.
        """
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"

        def call() -> Any:
            response = self._task_instance.get_log_without_preload_content(
                dag_id, run_id, task_id, try_number, full_content=full_content, _request_timeout=self.timeout)
            data = response.data
            if not 200 <= response.status <= 299:
                raise ApiException(http_resp=response)
            return json.loads(data) if data else None

        return dict(self._typed("GET", path, call))

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """The deserialized value of one XCom."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}"
        entry = self._typed("GET", path, lambda: self._xcom.get_xcom_entry(
            dag_id, task_id, run_id, key, deserialize=True, _request_timeout=self.timeout))
        if entry.actual_instance is None:  # anyOf(native, string) matched neither
            raise AirflowAPIError("GET", path, 200, f"an XCom entry of unknown shape: {entry!r}")
        return entry.actual_instance.value

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
        body = BackfillPostBody.model_validate({
            "dag_id": dag_id, "from_date": _ts(from_date), "to_date": _ts(to_date),
            "max_active_runs": max_active_runs, "reprocess_behavior": ReprocessBehavior(reprocess_behavior),
            "run_backwards": False, "dag_run_conf": conf or {}})
        return _plain(self._typed("POST", "/api/v2/backfills", lambda: self._backfill.create_backfill(
            body, _request_timeout=self.timeout)))

    def backfills(self, dag_id: str) -> list[dict[str, Any]]:
        """The backfills of ``dag_id``, completed or not (paged)."""
        out: list[dict[str, Any]] = []
        while True:
            page = self._typed("GET", "/api/v2/backfills", lambda: self._backfill.list_backfills(
                dag_id, limit=PAGE, offset=len(out), _request_timeout=self.timeout))
            out.extend(_plain(b) for b in page.backfills)
            if _last_page(len(page.backfills), len(out), page.total_entries):
                return out

    def pause_backfill(self, backfill_id: int) -> dict[str, Any]:
        """Pause a backfill: it creates no more runs (queued ones stay queued) until unpaused."""
        return _plain(self._typed("PUT", f"/api/v2/backfills/{backfill_id}/pause", lambda: self._backfill
                                  .pause_backfill(backfill_id, _request_timeout=self.timeout)))

    def unpause_backfill(self, backfill_id: int) -> dict[str, Any]:
        return _plain(self._typed("PUT", f"/api/v2/backfills/{backfill_id}/unpause", lambda: self._backfill
                                  .unpause_backfill(backfill_id, _request_timeout=self.timeout)))

    def backfill(self, backfill_id: int) -> dict[str, Any]:
        return _plain(self._typed("GET", f"/api/v2/backfills/{backfill_id}", lambda: self._backfill.get_backfill(
            backfill_id, _request_timeout=self.timeout)))

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
    def count_queued_asset_events(self, dag_id: str) -> int:
        """Asset events queued for ``dag_id`` that the scheduler has not turned into a run yet."""
        return int(self._typed("GET", f"/api/v2/dags/{dag_id}/assets/queuedEvents", lambda: self._asset
                               .get_dag_asset_queued_events(dag_id, _request_timeout=self.timeout)).total_entries)

    def asset_events(self, asset_name: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Events of the asset named ``asset_name`` (of every asset without one), oldest first, paged."""
        query: dict[str, Any] = {"order_by": ["timestamp"], **_lists(params)}
        if asset_name is not None:
            assets = self._typed("GET", "/api/v2/assets", lambda: self._asset.get_assets(
                name_pattern=asset_name, _request_timeout=self.timeout)).assets
            ids = [a.id for a in assets if a.name == asset_name]
            if not ids:
                return []
            query["asset_id"] = ids[0]
        out: list[dict[str, Any]] = []
        while True:
            page = self._typed("GET", "/api/v2/assets/events", lambda: self._asset.get_asset_events(
                limit=PAGE, offset=len(out), **query, _request_timeout=self.timeout))
            out.extend(_plain(e) for e in page.asset_events)
            if _last_page(len(page.asset_events), len(out), page.total_entries):
                return out


def _any_of(method: str, path: str, instance: BaseModel | None) -> dict[str, Any]:
    """The model an ``anyOf`` response matched, as the server's JSON (``None``: it matched none)."""
    if instance is None:
        raise AirflowAPIError(method, path, 200, "an answer of none of the shapes apache-airflow-client knows")
    return _plain(instance)


def _last_page(got: int, seen: int, total: int | None) -> bool:
    """Paging by offset: done on an empty or short page, or once ``total_entries`` are seen (the API may leave
    it out, as with cursor paging)."""
    return got < PAGE or (total is not None and seen >= total)


def _ts(day: str) -> str:
    return day if "T" in day else f"{day}T00:00:00Z"


def _no_answer(method: str, path: str, err: Exception) -> Exception:
    """The builtin ``TimeoutError`` or ``ConnectionError`` for a call that got no answer (urllib3's own
    exceptions are the transport's business, not the caller's)."""
    refused = isinstance(err, urllib3.exceptions.NewConnectionError | ConnectionError)
    if isinstance(err, urllib3.exceptions.TimeoutError | TimeoutError) and not refused:
        return TimeoutError(f"{method} {path}: no answer ({err})")
    return ConnectionError(f"{method} {path}: no answer ({err})")
