"""Airflow 3.3.2's partitioned assets on the real scheduler: what the generated DAGs rely on, checked end to end.

A producer on ``CronPartitionTimetable`` (key = the day) with a partitioned asset outlet, a consumer on
``PartitionedAssetTimetable(IdentityMapper)`` and a second consumer of the consumer's asset — the shape of
``P.features`` → ``P.M.score`` → ``P.M.drift`` with trivial tasks. Starts Airflow's api-server, scheduler,
dag-processor and triggerer (LocalExecutor) on a fresh PostgreSQL database ``loopline_spike_<pid>`` (dropped
after) and prints, for each check, what Airflow did:

1. ``POST /api/v2/backfills`` of the producer over 30 days, one day failing on purpose: one producer run per day
   with that day as ``partition_key`` (no logical date); each consumer once per successful key, none for the
   failed key; the wall time of the 30-day chain (first producer start → last second-consumer end).
2. The same backfill again over 3 days with ``reprocess_behavior`` ``none`` (nothing runs) then ``completed``
   (a new producer run per day beside the old one, and one more consumer run per day).
3. Clearing one producer run: exactly that key runs again downstream.
4. ``airflow backfill create`` (CLI) over 3 days: partitioned runs downstream too.
5. ``POST /dagRuns`` with a ``partition_key``: a run by hand for one key, and its downstream runs.

    PYTHONPATH=include:plugins .venv/bin/python benchmarks/partitions_spike.py
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "include"), str(REPO / "plugins")]

from loopline_dev.rest import AirflowClient  # noqa: E402
from loopline_dev.stack import DEFAULT_PG_URL, Stack, StackConfig  # noqa: E402

DAG_FILE = '''
import datetime as dt
from airflow.sdk import DAG, Asset, CronPartitionTimetable, IdentityMapper, PartitionedAssetTimetable, task

A, B, C = Asset(name="spike.a"), Asset(name="spike.b"), Asset(name="spike.c")
START = dt.datetime(2013, 1, 1, tzinfo=dt.timezone.utc)

with DAG("spike.producer", start_date=START, catchup=False, is_paused_upon_creation=True, max_active_runs=4,
         schedule=CronPartitionTimetable("0 0 * * *", timezone="UTC", run_offset=-1, key_format="%Y-%m-%d")):
    @task(outlets=[A], retries=0)
    def produce(**context):
        if context["dag_run"].partition_key == "2013-01-05":
            raise RuntimeError("failing on purpose")
    produce()

with DAG("spike.consumer", start_date=START, catchup=False, is_paused_upon_creation=True, max_active_runs=3,
         schedule=PartitionedAssetTimetable(assets=A, default_partition_mapper=IdentityMapper())):
    @task(outlets=[B])
    def consume(**context):
        return context["dag_run"].partition_key
    consume()

with DAG("spike.consumer2", start_date=START, catchup=False, is_paused_upon_creation=True, max_active_runs=3,
         schedule=PartitionedAssetTimetable(assets=B, default_partition_mapper=IdentityMapper())):
    @task(outlets=[C])
    def consume2(**context):
        return context["dag_run"].partition_key
    consume2()
'''
DAGS = ["spike.producer", "spike.consumer", "spike.consumer2"]


def say(*a: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *a, flush=True)


def keys(api: AirflowClient, dag: str) -> collections.Counter[str | None]:
    return collections.Counter(r.get("partition_key") for r in api.dag_runs(dag))


def settle(api: AirflowClient, quiet: float = 6, timeout: float = 900) -> None:
    last: Any = None
    since = t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        snap = tuple((d, r["dag_run_id"], r["state"]) for d in DAGS for r in api.dag_runs(d))
        pending = api.request("GET", "/ui/partitioned_dag_runs", params={"has_created_dag_run_id": "false"})
        busy = any(s in ("queued", "running") for _, _, s in snap) or pending["partitioned_dag_runs"]
        if snap != last or busy:
            last, since = snap, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(1)
    raise TimeoutError("the spike DAGs did not settle")


def show(api: AirflowClient, label: str) -> None:
    say("==", label)
    for d in DAGS:
        runs = api.dag_runs(d)
        c = collections.Counter(r.get("partition_key") for r in runs)
        say(f"  {d}: {len(runs)} runs, states {dict(collections.Counter(r['state'] for r in runs))}, "
            f"types {dict(collections.Counter(r['run_type'] for r in runs))}, "
            f"with a logical date {sum(bool(r.get('logical_date')) for r in runs)}, "
            f"keys run more than once {sorted(k for k, n in c.items() if n > 1 and k)}")


def _ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="loopline_spike_"))
    (work / "dags").mkdir()
    (work / "dags" / "spike.py").write_text(DAG_FILE)
    db = f"loopline_spike_{os.getpid()}"
    cfg = StackConfig(home=work / "home", metadata_db=f"{DEFAULT_PG_URL}/{db}", preload=False,
                      dags_folder=work / "dags", parallelism=3)
    stack = Stack(cfg)
    stack.start()
    say(f"stack up (PostgreSQL database {db}); load {os.getloadavg()[0]:.1f}")
    try:
        api = AirflowClient(cfg.api_url, "admin", stack.admin_password())
        while len([d for d in api.dags() if d["dag_id"] in DAGS]) < len(DAGS):
            time.sleep(2)
        for d in DAGS:
            api.set_paused(d, False)
        month = [f"2013-01-{i:02d}" for i in range(1, 31)]
        bf = api.create_backfill("spike.producer", month[0], month[-1], max_active_runs=4, reprocess_behavior="none")
        api.wait_backfill(int(bf["id"]), timeout=900)
        settle(api)
        show(api, "1. REST backfill 2013-01-01..30 (2013-01-05 fails on purpose)")
        prod = [r for r in api.dag_runs("spike.producer") if r["run_type"] == "backfill"]
        last = [r for r in api.dag_runs("spike.consumer2") if r["partition_key"] in month]
        took = (max(_ts(r["end_date"]) for r in last) - min(_ts(r["start_date"]) for r in prod)).total_seconds()
        say(f"  30-day chain, first producer start → last consumer2 end: {took:.0f} s "
            f"(load {os.getloadavg()[0]:.1f})")
        for d in DAGS[1:]:
            say(f"  {d}: keys missing {sorted(set(month) - set(keys(api, d)))}")

        for behaviour in ("none", "completed"):
            bf = api.create_backfill("spike.producer", month[0], month[2], reprocess_behavior=behaviour)
            api.wait_backfill(int(bf["id"]), timeout=600)
            settle(api)
            show(api, f"2. the backfill again over 2013-01-01..03, reprocess_behavior={behaviour}")

        run = next(r for r in api.dag_runs("spike.producer") if r["partition_key"] == "2013-01-10")
        before = {d: keys(api, d) for d in DAGS[1:]}
        api.request("POST", f"/api/v2/dags/spike.producer/dagRuns/{run['dag_run_id']}/clear", {"dry_run": False})
        settle(api)
        show(api, "3. cleared the producer run of 2013-01-10")
        for d in DAGS[1:]:
            say(f"  {d}: keys that ran again {sorted((keys(api, d) - before[d]).elements())}")

        out = subprocess.run([str(stack.bin / "airflow"), "backfill", "create", "--dag-id", "spike.producer",
                              "--from-date", "2013-02-01", "--to-date", "2013-02-03"], env=stack.env(),
                             capture_output=True, text=True, timeout=300, check=False)
        settle(api)
        show(api, f"4. CLI backfill 2013-02-01..03 (exit {out.returncode})")
        for d in DAGS:
            say(f"  {d}: February keys {sorted(k for k in keys(api, d) if k and k.startswith('2013-02'))}")

        api.request("POST", "/api/v2/dags/spike.producer/dagRuns",
                    {"dag_run_id": "by_hand_2013-03-01", "logical_date": None, "partition_key": "2013-03-01"})
        settle(api)
        say("== 5. a run by hand with partition_key 2013-03-01: runs of that key "
            + str({d: keys(api, d).get("2013-03-01", 0) for d in DAGS}))
    finally:
        stack.stop()
        drop = f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", drop], check=False)
        say(f"stopped; dropped {db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
