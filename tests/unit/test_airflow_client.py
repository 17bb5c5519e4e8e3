"""The REST client: retries only what is safe to send twice."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from loopline_dev.rest import AirflowAPIError, AirflowClient

pytestmark = pytest.mark.unit


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
        rows = [{"task_id": f"t{i}", "state": "running" if i % 5 == 0 else "success"} for i in range(250)]
        if "state" in q:
            rows = [r for r in rows if r["state"] == q["state"][0]]
        offset, limit = int(q["offset"][0]), int(q["limit"][0])
        body = json.dumps({"task_instances": rows[offset:offset + limit], "total_entries": len(rows)}).encode()
        self.send_response(200)
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
        Locked.runs[run_id] = {"dag_run_id": run_id, "conf": payload["conf"], "state": "queued"}
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
