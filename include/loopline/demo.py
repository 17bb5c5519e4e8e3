"""``make demo``: the whole loop through Airflow, as a user would drive it — then a summary.

1. Start the embedded stack (SQLite metadata DB, LocalExecutor sized for two cores, api-server, scheduler,
   dag-processor, triggerer, ``mlflow server``), all on loopback.
2. Unpause the four DAGs over the REST API.
3. Create one backfill of ``loopline_feature_backfill`` for the whole range with ``POST /api/v2/backfills``;
   pause it once January–February are built and trigger ``loopline_retrain`` by hand on them: the first
   champion. Score those days by hand.
4. Unpause the backfill and let it run month by month (paused at each month's end). Each features day
   triggers scoring, each scored batch the drift monitor; drifted days reach ``loopline_retrain`` through the
   triggerer's ``DriftEventTrigger``. Waiting for the loop to settle between months keeps the replay close to
   data order (the model a day is scored with is the one production would have had).
5. Stop everything; print the summary and write it to ``.loopline/demo-summary.json``.

``python -m loopline.demo up`` starts the same stack on the same data and leaves it running (UI addresses and
the admin password file are printed); ``python -m loopline.demo down`` stops it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from loopline.airflow_client import AirflowClient
from loopline.features import FEATURES_DATASET
from loopline.settings import Settings
from loopline.stack import Stack, StackConfig, reset_home, stop_from_state
from loopline.store import PartitionStore

DAGS = ("loopline_feature_backfill", "loopline_batch_scoring", "loopline_drift_monitor", "loopline_retrain")
ACTIVE = ("queued", "running")
DRIFT_ASSET = "loopline_drift"
RUN_TYPES = ("backfill", "scheduled", "manual", "operator_triggered", "asset_triggered", "asset_materialization")


def _say(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def client_for(stack: Stack) -> AirflowClient:
    return AirflowClient(stack.config.api_url, "admin", stack.admin_password())


def wait_for_dags(client: AirflowClient, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = {d["dag_id"] for d in client.dags()}
        if set(DAGS) <= seen:
            return
        time.sleep(2)
    raise TimeoutError(f"the dag-processor did not register {set(DAGS) - seen} within {timeout:.0f}s")


def active_runs(client: AirflowClient) -> int:
    """Running runs, and queued runs that will start (queued runs of a paused backfill will not)."""
    def count(**params: Any) -> int:
        return int(client.request("GET", "/api/v2/dags/~/dagRuns",
                                  params={"dag_id_pattern": "loopline_", "limit": 1, **params})["total_entries"])

    return count(state=["running"]) + count(state=["queued"], run_type=[t for t in RUN_TYPES if t != "backfill"])


def queued_asset_events(client: AirflowClient) -> int:
    """Asset events the scheduler has not turned into a run yet (a run of that DAG will still start)."""
    return sum(int(client.request("GET", f"/api/v2/dags/{dag_id}/assets/queuedEvents")["total_entries"])
               for dag_id in DAGS[1:])


def unemitted_drift_reports(client: AirflowClient, settings: Settings) -> int:
    """Drifted reports on disk that the triggerer's ``DriftEventTrigger`` has not emitted as a
    ``loopline_drift`` asset event yet (matched by the report's dedupe key)."""
    from loopline.reports import dedupe_key, list_drift_reports

    drifted = {dedupe_key(r) for r in list_drift_reports(PartitionStore(settings.store_root),
                                                         settings.feature_set_version,
                                                         model_name=settings.model_name, skip_malformed=True)
               if r["decision"]["drifted"]}
    if not drifted:
        return 0
    emitted = set()
    for event in client.asset_events(DRIFT_ASSET):
        extra = event.get("extra") or {}
        emitted.add((extra.get("payload") or extra).get("dedupe_key"))
    return len(drifted - emitted)


def settle(client: AirflowClient, quiet_seconds: float = 2, timeout: float = 1800, *,
           settings: Settings | None = None, drift_grace: float = 120) -> None:
    """Wait until the loop has nothing left to do for ``quiet_seconds`` (at least two looks).

    Nothing left: no run of a Loopline DAG queued or running, no asset event waiting to become a run and —
    with ``settings`` — every drifted report on disk already emitted by the triggerer's drift watcher as a
    ``loopline_drift`` event. Without ``settings`` the quiet period itself must outlast the watcher's poll
    interval, so a drift event still on its way is not mistaken for a settled loop; with them the wait ends
    as soon as the event exists. A drifted report the watcher has still not emitted after ``drift_grace``
    seconds of an otherwise idle loop is reported and no longer waited for.
    """
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    drift_wait_since: float | None = None
    while time.monotonic() < deadline:
        # Queued events first: an event consumed between the two calls shows up as an active run.
        busy = queued_asset_events(client) or active_runs(client)
        if not busy and settings is not None:
            missing = unemitted_drift_reports(client, settings)
            if missing:
                drift_wait_since = drift_wait_since or time.monotonic()
                if time.monotonic() - drift_wait_since < drift_grace:
                    busy = missing
                elif quiet_since is None:
                    _say(f"warning: {missing} drifted report(s) not emitted by the drift watcher after "
                         f"{drift_grace:.0f}s; going on without them (see {settings.home}/logs/triggerer.log)")
            else:
                drift_wait_since = None
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_seconds:
            return
        time.sleep(1)
    raise TimeoutError(f"the loop did not settle within {timeout:.0f}s")


def _ranges(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Contiguous runs of days, as (first, last) pairs."""
    out: list[tuple[dt.date, dt.date]] = []
    for d in sorted(days):
        if out and d == out[-1][1] + dt.timedelta(days=1):
            out[-1] = (out[-1][0], d)
        else:
            out.append((d, d))
    return out


def repair_lost_events(client: AirflowClient, settings: Settings, repaired: dict[str, list[str]]) -> bool:
    """Score the featured days nothing scored, and check the scored days nothing checked; True if it did.

    On a settled loop every features partition has a predictions partition and every predictions partition
    a drift report — unless Airflow dropped the asset event that should have started the run: with
    ``max_active_runs=1``, events that arrive while a run waits at the cap can be lost (measured here: the
    last five March days of a replay were featured but never scored; apache/airflow#56050). Each gap is
    run by hand over exactly its days (never re-scoring a day already scored) and recorded in ``repaired``.
    """
    from loopline.reports import report_days
    from loopline.scoring import PREDICTIONS_DATASET

    store = PartitionStore(settings.store_root)
    fsv = settings.feature_set_version
    scored = set(store.days(PREDICTIONS_DATASET, fsv))
    gaps = {
        "loopline_batch_scoring": sorted(set(store.days(FEATURES_DATASET, fsv)) - scored),
        "loopline_drift_monitor": sorted(scored - set(report_days(store, fsv))),
    }
    for dag_id, days in gaps.items():
        if not days:
            continue
        _say(f"{dag_id}: {len(days)} day(s) never reached (lost asset event): {[d.isoformat() for d in days]}; "
             f"running them by hand")
        repaired.setdefault(dag_id, []).extend(d.isoformat() for d in days)
        for lo, hi in _ranges(days):
            client.trigger(dag_id, conf={"start_ds": lo.isoformat(), "end_ds": hi.isoformat()})
        return True  # scoring first: its runs trigger the drift checks of the days they score
    return False


def settle_and_repair(client: AirflowClient, settings: Settings, repaired: dict[str, list[str]]) -> None:
    settle(client, settings=settings)
    for _ in range(4):
        if not repair_lost_events(client, settings, repaired):
            return
        settle(client, settings=settings)


def wait_for_days(client: AirflowClient, start: dt.date, through: dt.date, timeout: float = 3600) -> None:
    """Wait until the feature backfill's runs for ``start..through`` have all finished (success or failure:
    a day that fails validation — 2013-12-31 has no weather at all — must not stall the replay)."""
    need = (through - start).days + 1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = client.dag_runs("loopline_feature_backfill", run_type=["backfill"], state=["success", "failed"],
                               logical_date_gte=f"{start}T00:00:00Z", logical_date_lte=f"{through}T00:00:00Z")
        if len(runs) >= need:
            return
        time.sleep(2)
    raise TimeoutError(f"feature runs through {through} not finished within {timeout:.0f}s")


def months(start: dt.date, end: dt.date, chunk_days: int) -> list[tuple[dt.date, dt.date]]:
    """Split ``start..end`` into calendar months (or ``chunk_days``-day chunks when chunk_days < 28)."""
    out = []
    cur = start
    while cur <= end:
        if chunk_days >= 28:
            nxt = (cur.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        else:
            nxt = cur + dt.timedelta(days=chunk_days)
        out.append((cur, min(end, nxt - dt.timedelta(days=1))))
        cur = nxt
    return out


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(args.home).resolve()
    reset_home(home)
    settings = Settings(home=home, train_window_days=args.window_days)
    config = StackConfig(home=home, parallelism=args.parallelism,
                         extra_env={"LOOPLINE_DRIFT_POLL_SECONDS": str(args.poll_seconds)})
    timings: dict[str, float] = {}
    repaired: dict[str, list[str]] = {}
    t0 = time.monotonic()
    with Stack(config, settings) as stack:
        timings["stack_start_s"] = time.monotonic() - t0
        _say(f"stack up: Airflow {stack.config.api_url}  MLflow {stack.config.mlflow_url}  "
             f"(admin password in {stack.password_file})")
        client = client_for(stack)
        wait_for_dags(client)
        for dag_id in DAGS:
            client.set_paused(dag_id, False)
        _say("DAGs unpaused")

        # One backfill for the whole range, paced by pausing it at each month's end: on SQLite a backfill can
        # only be created while the scheduler, triggerer and dag-processor are held (see Stack.create_backfill),
        # so the demo creates exactly one.
        store = PartitionStore(settings.store_root)
        fsv = settings.feature_set_version
        settle(client, settings=settings)
        t = time.monotonic()
        _say(f"backfill of loopline_feature_backfill {args.start} .. {args.end} (POST /api/v2/backfills)")
        bf = stack.create_backfill(client, "loopline_feature_backfill", args.start.isoformat(),
                                   args.end.isoformat(), max_active_runs=args.backfill_runs or 2 * args.parallelism)
        backfill_id = int(bf["id"])
        wait_for_days(client, args.start, args.bootstrap_end)
        client.request("PUT", f"/api/v2/backfills/{backfill_id}/pause")
        settle(client, settings=settings)
        _say(f"features through {args.bootstrap_end}: training the first champion (manual retrain)")
        run = client.trigger("loopline_retrain", conf={"as_of": args.bootstrap_end.isoformat(),
                                                      "window_days": (args.bootstrap_end - args.start).days + 1})
        done = client.wait_run("loopline_retrain", run["dag_run_id"], timeout=900)
        _say(f"first champion: retrain run {done['state']}")
        if done["state"] != "success":
            raise RuntimeError(f"the bootstrap retrain failed; see the task logs under {config.airflow_home}/logs")
        last = max(store.days(FEATURES_DATASET, fsv))
        client.trigger("loopline_batch_scoring", conf={"start_ds": args.start.isoformat(), "end_ds": last.isoformat()})
        settle_and_repair(client, settings, repaired)
        timings["bootstrap_s"] = time.monotonic() - t

        t = time.monotonic()
        for _, hi in months(args.bootstrap_end + dt.timedelta(days=1), args.end, args.chunk_days):
            client.request("PUT", f"/api/v2/backfills/{backfill_id}/unpause")
            wait_for_days(client, args.start, hi)
            if hi < args.end:
                client.request("PUT", f"/api/v2/backfills/{backfill_id}/pause")
            settle_and_repair(client, settings, repaired)
            _say(f"replayed through {hi}: {len(store.days(FEATURES_DATASET, fsv))} feature days, "
                 f"{len(client.dag_runs('loopline_retrain'))} retrain runs")
        client.wait_backfill(backfill_id, timeout=600)
        timings["replay_s"] = time.monotonic() - t
        summary = summarize(client, settings)
        summary["repaired_lost_events"] = repaired
        summary["task_stats"] = task_stats(client)
    timings["total_s"] = time.monotonic() - t0
    summary["timings"] = {k: round(v, 1) for k, v in timings.items()}
    return summary


def summarize(client: AirflowClient, settings: Settings) -> dict[str, Any]:
    """Days scored, drift alerts, retrains, promotions and rejections — from the store, MLflow and Airflow."""
    from loopline.reports import list_drift_reports
    from loopline.scoring import PREDICTIONS_DATASET
    from loopline.tracking import CHAMPION, resolve_alias
    from loopline.tracking import client as mlflow_client

    store = PartitionStore(settings.store_root)
    fsv = settings.feature_set_version
    alerts = [
        {"ds": r["ds"], "model_version": r.get("model_version"),
         "top_features": [[n, round(float(v), 3)] for n, v in r["decision"]["top_features"][:3]]}
        for r in list_drift_reports(store, fsv) if r["decision"]["drifted"]
    ]
    retrains: list[dict[str, Any]] = []
    promotions: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    c = mlflow_client(settings)
    for mv in sorted(c.search_model_versions(f"name = '{settings.model_name}'"), key=lambda v: int(v.version)):
        tags = mv.tags or {}
        decision = tags.get("loopline.decision", "")
        entry = {
            "version": mv.version, "trigger": tags.get("loopline.trigger", "manual"),
            "window": [tags.get("loopline.window_start"), tags.get("loopline.window_end")],
            "outcome": decision or "undecided", "reason": tags.get("loopline.decision_reason", ""),
            "val_roc_auc": _float(tags.get("loopline.val_roc_auc")),
            "drift_ds": tags.get("loopline.drift_ds"),
        }
        retrains.append(entry)
        (promotions if decision == "promote" else rejections if decision == "reject" else []).append(entry)
    skipped = []
    for run in client.dag_runs("loopline_retrain"):
        states = {ti["task_id"]: ti["state"] for ti in client.task_instances("loopline_retrain", run["dag_run_id"])}
        if states.get("plan") == "skipped":
            skipped.append({"run_id": run["dag_run_id"], "run_type": run["run_type"]})
    failed = [r["logical_date"][:10] for r in client.dag_runs("loopline_feature_backfill", state=["failed"])]
    return {
        "days_featured": len(store.days(FEATURES_DATASET, fsv)),
        "days_failed_validation": sorted(failed),
        "days_scored": len(store.days(PREDICTIONS_DATASET, fsv)),
        "drift_alerts": alerts,
        "retrains": retrains,
        "retrains_skipped": skipped,
        "promotions": promotions,
        "rejections": rejections,
        "champion": resolve_alias(settings, CHAMPION),
    }


def task_stats(client: AirflowClient) -> dict[str, dict[str, float]]:
    """Per DAG: runs, task instances, summed task run time, and the mean overhead from queued to start."""
    import statistics

    out: dict[str, dict[str, float]] = {}
    for dag_id in DAGS:
        durations, waits = [], []
        runs = client.dag_runs(dag_id)
        tis = client.all_task_instances(dag_id)
        total = len(tis)
        for ti in tis:
            if ti.get("duration") is not None:
                durations.append(float(ti["duration"]))
            if ti.get("queued_when") and ti.get("start_date"):
                q = dt.datetime.fromisoformat(ti["queued_when"].replace("Z", "+00:00"))
                st = dt.datetime.fromisoformat(ti["start_date"].replace("Z", "+00:00"))
                waits.append((st - q).total_seconds())
        out[dag_id] = {
            "runs": len(runs), "task_instances": total, "task_seconds": round(sum(durations), 1),
            "mean_task_s": round(statistics.mean(durations), 2) if durations else 0.0,
            "mean_queued_to_start_s": round(statistics.mean(waits), 2) if waits else 0.0,
        }
    return out


def _float(value: str | None) -> float | None:
    try:
        return round(float(value), 4) if value is not None else None
    except ValueError:
        return None


def render(summary: dict[str, Any]) -> str:
    lines = [
        "Loopline demo — 2013 replayed through Airflow",
        f"  days with features  {summary['days_featured']}",
        f"  days scored         {summary['days_scored']}",
        f"  days failed         {len(summary['days_failed_validation'])} {summary['days_failed_validation'][:5]}",
        f"  drift alerts        {len(summary['drift_alerts'])}",
        f"  retrains            {len(summary['retrains'])} "
        f"(+{len(summary['retrains_skipped'])} skipped: cooldown or stale event)",
        f"  promotions          {len(summary['promotions'])}",
        f"  rejections          {len(summary['rejections'])}",
        f"  champion now        v{summary['champion']}",
        *[f"  run by hand         {dag_id}: {len(days)} day(s) whose asset event Airflow lost"
          for dag_id, days in summary.get("repaired_lost_events", {}).items()],
        "",
        "  version  trigger  window                     outcome  val ROC AUC  drift day",
    ]
    for r in summary["retrains"]:
        window = f"{r['window'][0]}..{r['window'][1]}"
        auc = f"{r['val_roc_auc']:.4f}" if r["val_roc_auc"] is not None else "-"
        lines.append(f"  v{r['version']:<7} {r['trigger']:<8} {window:<26} {r['outcome']:<8} {auc:>11}  "
                     f"{r['drift_ds'] or '-'}")
    if summary["drift_alerts"]:
        lines += ["", "  first drift alerts (day, model version, top features by PSI):"]
        for a in summary["drift_alerts"][:12]:
            top = ", ".join(f"{n} {v:.2f}" for n, v in a["top_features"])
            lines.append(f"  {a['ds']}  v{a['model_version']}  {top}")
    if "timings" in summary:
        lines += ["", "  wall time: " + ", ".join(f"{k}={v}s" for k, v in summary["timings"].items())]
    return "\n".join(lines)


def up(args: argparse.Namespace) -> None:
    home = Path(args.home).resolve()
    settings = Settings(home=home, train_window_days=args.window_days)
    stack = Stack(StackConfig(home=home, parallelism=args.parallelism), settings).start()
    print(f"Airflow UI : {stack.config.api_url}   (user admin, password in {stack.password_file})")
    print(f"MLflow UI  : {stack.config.mlflow_url}")
    print(f"Logs       : {home / 'logs'}  — stop with `make down`")


def _day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loopline.demo", description=__doc__.split("\n")[0])
    p.add_argument("command", nargs="?", default="run", choices=["run", "up", "down"])
    p.add_argument("--home", default=".loopline/demo", help="state folder (wiped by `run`)")
    p.add_argument("--start", type=_day, default=dt.date(2013, 1, 1))
    p.add_argument("--bootstrap-end", type=_day, default=dt.date(2013, 2, 28))
    p.add_argument("--end", type=_day, default=dt.date(2013, 12, 31))
    p.add_argument("--chunk-days", type=int, default=31, help="replay chunk: a month (≥28) or N days")
    p.add_argument("--window-days", type=int, default=60)
    p.add_argument("--parallelism", type=int, default=3)
    p.add_argument("--backfill-runs", type=int, default=0,
                   help="backfill max_active_runs (default: twice the parallelism, so a freed slot finds a "
                        "scheduled task at once instead of waiting for the next run to be started)")
    p.add_argument("--poll-seconds", type=int, default=5, help="drift watcher poll interval")
    p.add_argument("--summary", default=".loopline/demo-summary.json")
    args = p.parse_args(argv)
    if args.command == "down":
        print("stopped" if stop_from_state(Path(args.home)) else f"no stack recorded in {args.home}")
        return 0
    if args.command == "up":
        up(args)
        return 0
    summary = run_demo(args)
    out = Path(args.summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(render(summary))
    print(f"\nsummary written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
