"""The REST client (``loopline_dev.rest``, on the official ``apache-airflow-client``) against HTTP stub servers:
what it puts on the wire, and that it retries only what is safe to send twice. The same client against a real
api-server: ``tests/integration/test_rest_client_airflow.py``."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from loopline_dev.rest import AirflowAPIError, AirflowClient
from loopline_dev.stack import free_port

pytestmark = pytest.mark.unit


def _run(run_id: str, conf: dict | None = None, logical_date: str | None = None) -> dict:
    """A DAG run as Airflow 3.3 answers it (the fields ``DAGRunResponse`` requires)."""
    return {"dag_id": "d", "dag_display_name": "d", "dag_run_id": run_id, "dag_versions": [], "conf": conf,
            "logical_date": logical_date, "run_after": "2013-03-01T00:00:00Z", "run_type": "manual",
            "state": "queued"}


def _ti(task_id: str, state: str) -> dict:
    """A task instance as Airflow 3.3 answers it (the fields ``TaskInstanceResponse`` requires)."""
    return {"id": str(uuid.uuid4()), "dag_id": "d", "dag_display_name": "d", "dag_run_id": "r", "task_id": task_id,
            "task_display_name": task_id, "state": state, "executor_config": "{}", "map_index": -1, "max_tries": 0,
            "pool": "default_pool", "pool_slots": 1, "run_after": "2013-03-01T00:00:00Z", "try_number": 1}


class Flaky(BaseHTTPRequestHandler):
    """First call to each path stalls past the client's timeout (or answers 503 for /busy); later calls work."""

    seen: ClassVar[dict[str, int]] = {}

    def _answer(self) -> None:
        n = Flaky.seen[self.path] = Flaky.seen.get(self.path, 0) + 1
        if self.path == "/busy" and n == 1:
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"detail": "Database is locked."}')
            return
        if n == 1 and self.path != "/busy":
            time.sleep(1.5)
        body = json.dumps({"path": self.path, "calls": n}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port for the duration of a test; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def server() -> Iterator[str]:
    Flaky.seen = {}
    yield from _serve(Flaky)


def test_idempotent_calls_are_retried_after_a_timeout(server: str) -> None:
    c = AirflowClient(server, token="t", timeout=0.5, retries=2)
    assert c.request("PUT", "/api/v2/backfills/1/pause")["calls"] >= 2


def test_a_post_is_not_sent_twice_after_a_timeout(server: str) -> None:
    c = AirflowClient(server, token="t", timeout=0.5, retries=2)
    with pytest.raises(TimeoutError):
        c.request("POST", "/api/v2/backfills", {"dag_id": "x"})
    time.sleep(1.6)
    assert Flaky.seen["/api/v2/backfills"] == 1


def test_503_is_retried_and_other_errors_are_not(server: str) -> None:
    c = AirflowClient(server, token="t", timeout=5, retries=2)
    assert c.request("POST", "/busy")["calls"] == 2
    no_retry = AirflowClient(server, token="t", timeout=5, retries=0)
    Flaky.seen["/busy"] = 0
    with pytest.raises(AirflowAPIError) as err:
        no_retry.request("GET", "/busy")
    assert err.value.status == 503


class Paged(BaseHTTPRequestHandler):
    """250 task instances served 100 at a time, filtered by ``state`` like the API does."""

    def do_GET(self) -> None:
        from urllib.parse import parse_qs, urlparse

        q = parse_qs(urlparse(self.path).query)
        rows = [_ti(f"t{i}", "running" if i % 5 == 0 else "success") for i in range(250)]
        if "state" in q:
            rows = [r for r in rows if r["state"] == q["state"][0]]
        if "task_id" in q:
            rows = [r for r in rows if r["task_id"] == q["task_id"][0]]
        offset, limit = int(q["offset"][0]), int(q["limit"][0])
        body = json.dumps({"task_instances": rows[offset:offset + limit], "total_entries": len(rows)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_all_task_instances_pages_through_every_run() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Paged)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        c = AirflowClient(f"http://127.0.0.1:{httpd.server_address[1]}", token="t")
        assert [t["task_id"] for t in c.all_task_instances("d")] == [f"t{i}" for i in range(250)]
        assert len(c.all_task_instances("d", state="running")) == 50
        # One task's instances (the demo's exactly-once check asks for them so): task_id is one string.
        assert [t["task_id"] for t in c.all_task_instances("d", state=["success"], task_id="t7")] == ["t7"]
    finally:
        httpd.shutdown()


class Locked(BaseHTTPRequestHandler):
    """Airflow on a locked SQLite: the first call answers 500 "Database error"; /boom always fails otherwise.

    POST .../dagRuns creates the run but answers too late (past the client's timeout), so the client's repeat
    finds it: 409, as Airflow answers for an existing run id; GET .../dagRuns/{id} returns it.
    """

    seen: ClassVar[dict[str, int]] = {}
    runs: ClassVar[dict[str, dict]] = {}

    def _send(self, status: int, body: object) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def do_PUT(self) -> None:
        n = Locked.seen[self.path] = Locked.seen.get(self.path, 0) + 1
        if self.path == "/boom":
            self._send(500, {"detail": "Internal Server Error"})
        elif n == 1:
            self._send(500, {"detail": {"reason": "Database error", "statement": "hidden"}})
        else:
            self._send(200, {"calls": n})

    do_PATCH = do_PUT

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        run_id = payload["dag_run_id"]
        Locked.seen[self.path] = Locked.seen.get(self.path, 0) + 1
        if run_id in Locked.runs:
            self._send(409, {"detail": f"DAG Run with run_id {run_id} already exists"})
            return
        Locked.runs[run_id] = _run(run_id, payload["conf"])
        time.sleep(1.0)
        self._send(200, Locked.runs[run_id])

    def do_GET(self) -> None:
        run_id = urllib.parse.unquote(self.path.rsplit("/", 1)[-1])
        self._send(200, Locked.runs[run_id]) if run_id in Locked.runs else self._send(404, {"detail": "no run"})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def locked() -> Iterator[str]:
    Locked.seen, Locked.runs = {}, {}
    yield from _serve(Locked)


def test_a_database_error_is_retried_for_idempotent_calls_only(locked: str) -> None:
    c = AirflowClient(locked, token="t", timeout=5, retries=2)
    assert c.request("PUT", "/api/v2/backfills/1/pause")["calls"] == 2
    with pytest.raises(AirflowAPIError) as err:
        c.request("PUT", "/boom")  # a 500 that is not a rolled-back transaction: not sent again
    assert err.value.status == 500 and Locked.seen["/boom"] == 1


def test_trigger_sent_again_returns_the_run_its_first_attempt_created(locked: str) -> None:
    c = AirflowClient(locked, token="t", timeout=0.5, retries=2)
    run = c.trigger("d", conf={"as_of": "2013-03-01"})
    assert run["dag_run_id"].startswith("manual__") and run["conf"] == {"as_of": "2013-03-01"}
    assert Locked.seen["/api/v2/dags/d/dagRuns"] == 2 and list(Locked.runs) == [run["dag_run_id"]]
    with pytest.raises(AirflowAPIError) as err:  # a run id that already existed before the call: a real 409
        AirflowClient(locked, token="t", timeout=5).trigger("d", run_id=run["dag_run_id"])
    assert err.value.status == 409


class Recorder(BaseHTTPRequestHandler):
    """Answers like Airflow 3.3 for a few paths and records every request (method, path, query, auth, body)."""

    calls: ClassVar[list[dict]] = []

    def _answer(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        Recorder.calls.append({"method": self.command, "path": urllib.parse.unquote(url.path),
                               "raw_path": url.path, "query": urllib.parse.parse_qs(url.query),
                               "auth": self.headers.get("Authorization"), "body": body})
        if url.path == "/auth/token":
            answer: object = {"access_token": "a.jwt.token"}
        elif self.command == "POST":
            answer = _run(body["dag_run_id"], body["conf"], body["logical_date"])
        elif url.path.endswith("/dagRuns"):
            answer = {"dag_runs": [_run("r1", logical_date=None)], "total_entries": 1}
        else:
            answer = _run(urllib.parse.unquote(url.path.rsplit("/", 1)[-1]))
        data = json.dumps(answer).encode()
        self.send_response(200)  # Airflow answers 200 to a trigger too
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    Recorder.calls = []
    yield from _serve(Recorder)


def test_the_token_is_fetched_once_and_sent_on_every_call(recorder: str) -> None:
    c = AirflowClient(recorder, "admin", "s3cret")
    c.dag_runs("d")
    c.request("PUT", "/api/v2/backfills/1/pause")
    token, *calls = Recorder.calls
    assert (token["method"], token["path"], token["auth"]) == ("POST", "/auth/token", None)
    assert token["body"] == {"username": "admin", "password": "s3cret"}
    assert [c["auth"] for c in calls] == ["Bearer a.jwt.token"] * 2


def test_filters_go_out_as_the_api_query_and_runs_come_back_as_sent(recorder: str) -> None:
    c = AirflowClient(recorder, token="t")
    [run] = c.dag_runs("d", run_type="backfill", state=["success", "failed"], logical_date_gte="2013-01-01T00:00:00Z")
    [call] = Recorder.calls  # the official client's datetime format; the real api-server's test proves it parses
    assert call["path"] == "/api/v2/dags/d/dagRuns" and call["auth"] == "Bearer t"
    assert call["query"] == {"run_type": ["backfill"], "state": ["success", "failed"], "limit": ["100"],
                             "offset": ["0"], "logical_date_gte": ["2013-01-01T00:00:00.000000+0000"]}
    # The wire shape: an asset-triggered run's null logical_date is kept, datetimes are ISO strings.
    assert run["logical_date"] is None and run["run_after"] == "2013-03-01T00:00:00Z" and run["state"] == "queued"


def test_trigger_sends_the_run_id_and_a_null_logical_date(recorder: str) -> None:
    c = AirflowClient(recorder, token="t")
    run = c.trigger("d", conf={"as_of": "2013-03-01"}, run_id="manual__2013-03-01T00:00:00+00:00")
    [call] = Recorder.calls
    assert call["body"] == {"conf": {"as_of": "2013-03-01"}, "dag_run_id": "manual__2013-03-01T00:00:00+00:00",
                            "logical_date": None}
    assert run["dag_run_id"] == "manual__2013-03-01T00:00:00+00:00" and run["conf"] == {"as_of": "2013-03-01"}
    Recorder.calls.clear()
    assert c.dag_run("d", run["dag_run_id"])["dag_run_id"] == run["dag_run_id"]
    assert Recorder.calls[0]["raw_path"] == "/api/v2/dags/d/dagRuns/manual__2013-03-01T00%3A00%3A00%2B00%3A00"


def test_a_refused_connection_is_a_connection_error() -> None:
    c = AirflowClient(f"http://127.0.0.1:{free_port()}", token="t", timeout=2, retries=0)  # nothing listens there
    with pytest.raises(ConnectionError):
        c.dags()


class Created(BaseHTTPRequestHandler):
    """Answers a trigger with 201, a status Airflow does not use and the client's spec has no model for."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        data = json.dumps(_run("r1")).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def created() -> Iterator[str]:
    yield from _serve(Created)


def test_an_answer_the_client_cannot_type_is_an_error_not_a_none(created: str) -> None:
    with pytest.raises(AirflowAPIError, match=r"POST /api/v2/dags/d/dagRuns -> HTTP 0: a success answer"):
        AirflowClient(created, token="t").trigger("d", run_id="r1")
