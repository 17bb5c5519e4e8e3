"""REST client cost: ``loopline_dev.rest`` on the official ``apache-airflow-client`` beside the same pages read as raw
JSON, against a real ``airflow api-server`` (SQLite, loopback; ``tests/support/airflow_api.py``).

A backfill creates the runs of one DAG for 2024 (no scheduler runs, so they stay queued); then each way lists
them all, in pages of 100, ``--reps`` times:

- ``typed``: ``AirflowClient.dag_runs`` — the official client's ``DagRunApi.get_dag_runs``, each page validated
  into ``DAGRunResponse`` models and dumped back to dicts;
- ``raw, same transport``: ``AirflowClient.request`` — the same client's urllib3 transport and auth, ``json.loads``;
- ``raw, stdlib``: ``urllib.request`` + ``json.loads``, the way the hand-written client did it.

Also the import of ``loopline_dev.rest`` in a fresh interpreter (median of 3) beside ``urllib.request``.

    .venv/bin/python benchmarks/rest_client.py [--reps 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from loopline_dev.rest import AirflowClient  # noqa: E402

from tests.support.airflow_api import DAG_ID, api_server  # noqa: E402


def _median_s(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _raw_pages(get: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        page = get(len(out))
        out.extend(page["dag_runs"])
        if len(page["dag_runs"]) < 100 or len(out) >= page["total_entries"]:
            return out


def _import_s(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "include"), os.environ.get("PYTHONPATH", "")])}
    return statistics.median(float(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                                  text=True, check=True).stdout) for _ in range(3))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=15)
    args = p.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="loopline-rest-bench-") as tmp, api_server(Path(tmp)) as (url, pw):
        client = AirflowClient(url, "admin", pw)
        bf = client.create_backfill(DAG_ID, "2024-01-02", "2024-12-31", max_active_runs=1)
        token = client.token()

        def stdlib(offset: int) -> dict[str, Any]:
            req = urllib.request.Request(f"{url}/api/v2/dags/{DAG_ID}/dagRuns?limit=100&offset={offset}",
                                         headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as resp:
                return dict(json.loads(resp.read()))

        ways: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "typed (official client models)": lambda: client.dag_runs(DAG_ID),
            "raw, same transport": lambda: _raw_pages(lambda o: client.request(
                "GET", f"/api/v2/dags/{DAG_ID}/dagRuns", params={"limit": 100, "offset": o})),
            "raw, stdlib urllib": lambda: _raw_pages(stdlib),
        }
        for way in ways.values():  # warm the server's caches and the connection pool
            way()
        results = {name: _median_s(way, args.reps) for name, way in ways.items()}
        n = {name: len(runs) for name, (_, runs) in results.items()}
        assert len(set(n.values())) == 1, n
        assert {r["dag_run_id"] for r in results["typed (official client models)"][1]} == {
            r["dag_run_id"] for r in results["raw, stdlib urllib"][1]}
        runs = next(iter(n.values()))
        print(f"backfill {bf['id']}: listing {runs} runs of {DAG_ID} in pages of 100, median of {args.reps}")
        base = results["raw, stdlib urllib"][0]
        for name, (s, _) in results.items():
            print(f"  {name:32s} {s * 1000:8.1f} ms  ({s * 1e6 / runs:6.1f} µs/run, {s / base:4.2f}× stdlib)")
    print(f"import in a fresh interpreter: loopline_dev.rest {_import_s('loopline_dev.rest') * 1000:.0f} ms, "
          f"urllib.request {_import_s('urllib.request') * 1000:.0f} ms")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
