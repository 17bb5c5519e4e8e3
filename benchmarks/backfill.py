"""Backfill benchmark: a 365-day feature backfill on the Celery stack beside the embedded LocalExecutor stack.

Each topology is started fresh (``loopline_dev.stack``: the Celery one is ``make stack``'s — PostgreSQL metadata DB,
CeleryExecutor on Redis, two workers of two slots; the embedded one is ``make demo``'s — SQLite, LocalExecutor),
backfills ``flights.features`` (the flights project's generated features DAG) over 2013 through ``POST
/api/v2/backfills`` (the other DAGs stay paused, so only the backfill runs), and is checked partition by partition:
every day whose run succeeded has exactly one committed partition, written by that day's backfill run (the manifest
records the run and the try), no temporary leftovers, and no partition for a day whose run failed. Printed side by
side: wall time from the backfill's creation to its completion, task slots, tasks per minute, retried tasks. The
Celery stack gets PostgreSQL databases and a Redis database of its own (``claim_redis_db``), dropped and flushed at
the end.

    .venv/bin/python benchmarks/backfill.py                        # both topologies, the whole of 2013
    .venv/bin/python benchmarks/backfill.py --end 2013-01-31 --only celery
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from loopline.settings import Settings
from loopline.store import PartitionStore
from loopline_dev.demo import Loop, wait_for_dags
from loopline_dev.rest import AirflowClient
from loopline_dev.stack import (
    Stack,
    StackConfig,
    claim_redis_db,
    drop_postgres_database,
    release_redis_db,
    reset_home,
)

REPO = Path(__file__).resolve().parents[1]
LOOP = Loop.of("flights", ())  # the features DAG only: the models' DAGs stay paused
DAG = LOOP.features_dag
FEATURES_DATASET, FSV = LOOP.features_dataset, LOOP.fsv


def check_partitions(store: PartitionStore, client: AirflowClient) -> dict[str, Any]:
    runs = client.dag_runs(DAG, run_type=["backfill"])
    by_day = {r["partition_key"]: r for r in runs}  # the day a run builds is its partition key
    written = {d.isoformat() for d in store.days(FEATURES_DATASET, FSV)}
    succeeded = {d for d, r in by_day.items() if r["state"] == "success"}
    failed = sorted(d for d, r in by_day.items() if r["state"] == "failed")
    problems = []
    if written != succeeded:
        problems.append(f"partitions {len(written)} vs successful runs {len(succeeded)}: "
                        f"missing {sorted(succeeded - written)[:5]}, unexpected {sorted(written - succeeded)[:5]}")
    tries: dict[int, int] = {}
    for day in sorted(written):
        manifest = store.manifest(FEATURES_DATASET, FSV, day)
        if manifest.extra.get("run_id") != by_day[day]["dag_run_id"]:
            problems.append(f"{day}: written by {manifest.extra.get('run_id')}, not by its backfill run")
        tries[int(manifest.extra.get("try_number") or 0)] = tries.get(int(manifest.extra.get("try_number") or 0), 0) + 1
        names = sorted(Path(p).name for p in store.fs.ls(store._path(FEATURES_DATASET, FSV, day)))
        if names != sorted(["_manifest.json", *manifest.files]) or len(manifest.files) != 1:
            problems.append(f"{day}: files {names}")
    leftovers = [p for p in store.fs.ls(store._path(FEATURES_DATASET, FSV)) if "_tmp-" in Path(p).name]
    if leftovers:
        problems.append(f"temporary leftovers: {leftovers[:3]}")
    return {"written": len(written), "failed_days": failed, "manifest_tries": tries, "problems": problems}


def run(kind: str, start: dt.date, end: dt.date) -> dict[str, Any]:
    home = REPO / ".loopline" / "bench" / f"backfill-{kind}"
    reset_home(home)
    database = f"loopline_bench_{uuid.uuid4().hex[:6]}"
    redis_url = ""
    if kind == "celery":  # its own PostgreSQL databases and Redis database, dropped and flushed at the end
        redis_url = claim_redis_db()
        config = StackConfig.production(home, database=database, redis_url=redis_url, workers=2, concurrency=2)
    else:
        config = StackConfig(home=home)
    settings = Settings(home=home)
    t0 = time.monotonic()
    stack = Stack(config, settings)
    try:
        stack.start()
        stack.supervise()
        started = time.monotonic() - t0
        client = AirflowClient(config.api_url, "admin", stack.admin_password())
        wait_for_dags(client, LOOP)
        client.set_paused(DAG, False)
        t = time.monotonic()
        bf = stack.create_backfill(client, DAG, start.isoformat(), end.isoformat(),
                                   max_active_runs=config.parallelism)
        client.wait_backfill(int(bf["id"]), timeout=7200)
        wall = time.monotonic() - t
        retried = sum(1 for ti in client.all_task_instances(DAG) if (ti.get("try_number") or 0) > 1)
        result = check_partitions(PartitionStore(settings.store_root), client)
        return {"kind": kind, "slots": config.parallelism, "start_s": started, "wall_s": wall,
                "days": (end - start).days + 1, "retried": retried, **result}
    finally:
        stack.stop()
        for url in config.databases:
            drop_postgres_database(url)
        if redis_url:
            release_redis_db(redis_url)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 1, 1))
    p.add_argument("--end", type=dt.date.fromisoformat, default=dt.date(2013, 12, 31))
    p.add_argument("--only", choices=["celery", "local"])
    args = p.parse_args()
    kinds = [args.only] if args.only else ["celery", "local"]
    results = [run(k, args.start, args.end) for k in kinds]
    print(f"\nmachine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"backfill of {DAG} {args.start}..{args.end}")
    print(f"{'topology':<34}{'slots':>6}{'wall s':>9}{'tasks/min':>11}{'written':>9}{'failed':>8}{'retried':>9}"
          f"  exactly once")
    names = {"celery": "Celery (2 workers x 2), PostgreSQL", "local": "LocalExecutor, SQLite"}
    for r in results:
        print(f"{names[r['kind']]:<34}{r['slots']:>6}{r['wall_s']:>9.0f}{r['days'] / r['wall_s'] * 60:>11.1f}"
              f"{r['written']:>9}{len(r['failed_days']):>8}{r['retried']:>9}  "
              f"{'yes' if not r['problems'] else 'NO: ' + '; '.join(r['problems'][:3])}")
    for r in results:
        if r["failed_days"]:
            print(f"  {names[r['kind']]}: failed days {r['failed_days']} (no partition written for them)")
        print(f"  {names[r['kind']]}: stack start {r['start_s']:.0f} s; manifests by try number {r['manifest_tries']}")
    return 0 if all(not r["problems"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
