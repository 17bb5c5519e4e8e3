"""``make demo``: a project's whole loop through Airflow, as a user would drive it — then a summary per model.

1. Start the embedded stack (SQLite metadata DB, LocalExecutor sized for two cores, api-server, scheduler,
   dag-processor, triggerer, ``mlflow server``), all on loopback.
2. Unpause the project's generated DAGs over the REST API (``P.features`` and, for every model M,
   ``P.M.score``, ``P.M.drift``, ``P.M.retrain``; they are paused when created).
3. Create one backfill of ``P.features`` for the whole range with ``POST /api/v2/backfills``: one run per day,
   its partition key the day. Pause it once the first training window is built and trigger each ``P.M.retrain``
   by hand on it: each model's first champion. The scoring runs of those days were skipped (no champion yet):
   clear them, so each scores its day and starts that day's drift check.
4. Unpause the backfill and let it run month by month (paused at each month's end). Each features partition
   starts every model's scoring once for the same key, each predictions partition that model's drift check;
   drifted days reach ``P.M.retrain`` through the triggerer's ``DriftEventTrigger``. Waiting for the loop to
   settle between months keeps the replay close to data order (the model a day is scored with is the one
   production would have had). Nothing is repaired by hand.
5. Check that every day was featured, scored and checked exactly once (:func:`exactly_once`: one run per day
   and DAG, and the manifest or report of the day names that run). Stop everything; print the summary and write
   it to ``.loopline/demo-summary.json``.

``python -m loopline_dev.demo up`` starts the same stack on the same data and leaves it running (UI addresses and
the admin password file are printed); ``python -m loopline_dev.demo down`` stops it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopline.project import ModelNames, Project, discover, load_project, model_names, project_names
from loopline.project.loader import BUILTIN_ROOT
from loopline.settings import Settings
from loopline.store import PartitionStore

from loopline_dev.rest import AirflowAPIError, AirflowClient
from loopline_dev.stack import Stack, StackConfig, reset_home, stop_from_state

ACTIVE = ("queued", "running")
RUN_TYPES = ("backfill", "scheduled", "manual", "operator_triggered", "asset_triggered", "asset_materialization")
LOOP_STEPS = ("score", "drift", "retrain")  # a model's DAGs the loop runs (rollback is by hand only)


@dataclass(frozen=True)
class Loop:
    """The generated DAGs, assets and datasets of one project's loop, as the demo and the end-to-end tests
    drive them (names from :mod:`loopline.project.names`)."""

    project: Project
    models: tuple[str, ...]

    @classmethod
    def of(cls, project: Project | str, models: tuple[str, ...] | None = None) -> Loop:
        p = load_project(project) if isinstance(project, str) else project
        return cls(p, tuple(models) if models is not None else tuple(p.models))

    @property
    def name(self) -> str:
        return self.project.project

    @property
    def fsv(self) -> str:
        return self.project.features.version

    @property
    def features_dag(self) -> str:
        return project_names(self.project).features_dag

    @property
    def features_dataset(self) -> str:
        return project_names(self.project).features_dataset

    def model(self, model: str) -> ModelNames:
        return model_names(self.project, model)

    @property
    def dags(self) -> tuple[str, ...]:
        """Every DAG the loop runs: the features DAG, then each model's scoring, drift and retraining."""
        return (self.features_dag, *self.model_dags)

    @property
    def model_dags(self) -> tuple[str, ...]:
        """The DAGs that asset events start (scoring, drift, retraining of each model)."""
        return tuple(self.model(m).dag(step) for m in self.models for step in LOOP_STEPS)


def default_project() -> str:
    """The project shipped in ``include/projects/`` when there is exactly one."""
    shipped = sorted(f.project.project for f in discover([BUILTIN_ROOT]) if f.project is not None)
    if len(shipped) != 1:
        raise SystemExit(f"name the project with --project (shipped: {shipped})")
    return shipped[0]


def bootstrap_end(project: Project, start: dt.date) -> dt.date:
    """The last day of the first champions' window: the end of the last whole month within the longest training
    window from ``start`` (2013-02-28 for a 60-day window from 2013-01-01), so the replay goes on month by month."""
    window = max(m.training.window_days for m in project.models.values())
    end = (start + dt.timedelta(days=window)).replace(day=1) - dt.timedelta(days=1)
    return end if end > start else start + dt.timedelta(days=window - 1)


def _say(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


def client_for(stack: Stack) -> AirflowClient:
    return AirflowClient(stack.config.api_url, "admin", stack.admin_password())


def wait_for_dags(client: AirflowClient, loop: Loop, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        seen = {d["dag_id"] for d in client.dags()}
        if set(loop.dags) <= seen:
            return
        time.sleep(2)
    raise TimeoutError(f"the dag-processor did not register {sorted(set(loop.dags) - seen)} within {timeout:.0f}s")


def unpause(client: AirflowClient, loop: Loop) -> None:
    """Unpause the loop's DAGs (generated DAGs are paused when created)."""
    for dag_id in loop.dags:
        client.set_paused(dag_id, False)


def active_runs(client: AirflowClient, loop: Loop) -> int:
    """Running runs, and queued runs that will start (queued runs of a paused backfill will not)."""
    scheduled = [t for t in RUN_TYPES if t != "backfill"]
    return (client.count_dag_runs("~", dag_id_pattern=f"{loop.name}.", state=["running"])
            + client.count_dag_runs("~", dag_id_pattern=f"{loop.name}.", state=["queued"], run_type=scheduled))


def queued_asset_events(client: AirflowClient, loop: Loop) -> int:
    """Asset events the scheduler has not turned into a run yet (a run of that DAG will still start): queued
    events of the unpartitioned DAGs, and partitions of the partitioned ones still waiting for their run."""
    queued = sum(client.count_queued_asset_events(dag_id) for dag_id in loop.model_dags)
    # /ui/partitioned_dag_runs is a private UI route: apache-airflow-client 3.3.2 has no method for it.
    pending = client.request("GET", "/ui/partitioned_dag_runs", params={"has_created_dag_run_id": "false"})
    return queued + sum(1 for r in pending["partitioned_dag_runs"] if r.get("dag_id") in loop.model_dags)


def unemitted_drift_reports(client: AirflowClient, loop: Loop, settings: Settings) -> int:
    """Drifted reports on disk that the triggerer's ``DriftEventTrigger`` has not emitted as a ``loopline.P.M.drift``
    asset event yet (matched by the report's dedupe key), summed over the models."""
    from loopline.reports import dedupe_key, list_drift_reports

    store = PartitionStore(settings.store_root)
    missing = 0
    for model in loop.models:
        names = loop.model(model)
        drifted = {dedupe_key(r) for r in list_drift_reports(store, loop.fsv, model_name=names.registered_model,
                                                             skip_malformed=True, dataset=names.drift_dataset)
                   if r["decision"]["drifted"]}
        if not drifted:
            continue
        emitted = set()
        for event in client.asset_events(names.drift_asset):
            extra = event.get("extra") or {}
            emitted.add((extra.get("payload") or extra).get("dedupe_key"))
        missing += len(drifted - emitted)
    return missing


def settle(client: AirflowClient, loop: Loop, quiet_seconds: float = 2, timeout: float = 1800, *,
           settings: Settings | None = None, drift_grace: float = 120) -> None:
    """Wait until the loop has nothing left to do for ``quiet_seconds`` (at least two looks).

    Nothing left: no run of the project's DAGs queued or running, no asset event waiting to become a run and —
    with ``settings`` — every drifted report on disk already emitted by the triggerer's drift watcher as a
    ``loopline.P.M.drift`` event. Without ``settings`` the quiet period itself must outlast the watcher's poll
    interval, so a drift event still on its way is not mistaken for a settled loop; with them the wait ends
    as soon as the event exists. A drifted report the watcher has still not emitted after ``drift_grace``
    seconds of an otherwise idle loop is reported and no longer waited for.
    """
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    drift_wait_since: float | None = None
    while time.monotonic() < deadline:
        # A running loop answers the two run counts: the seven queued-event questions are asked only when no
        # run is active (they were the replay's most frequent API call). Then queued events first: an event
        # consumed between those calls and the second run count shows up as an active run.
        busy = active_runs(client, loop)
        if not busy:
            busy = queued_asset_events(client, loop) or active_runs(client, loop)
        if not busy and settings is not None:
            try:
                missing = unemitted_drift_reports(client, loop, settings)
            except AirflowAPIError as exc:
                if exc.status != 500:
                    raise
                # Airflow 3.3.2 answers the asset-events listing with HTTP 500 while a run one of the events
                # created is queued (apache/airflow#71360: DagRunAssetReference.start_date is required): a drift
                # event has just created a retrain run that has not started, so the loop is busy. Look again.
                busy, missing = 1, 0
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


def clear_skipped_scoring(client: AirflowClient, loop: Loop) -> dict[str, int]:
    """Clear the scoring runs whose task was skipped for want of a champion: each runs again for its own
    partition key (the day), scores it and starts that day's drift check. The number cleared, by DAG.

    Holding the scoring DAGs paused until the first champions instead does not work on Airflow 3.3.2: an asset
    event queues runs for unpaused consumers only (``AssetManager.register_asset_change``: ``scheduled_dags if
    not ref.dag.is_paused``), partitioned consumers included, so the days featured meanwhile would never be
    scored (tried: 0 scoring runs for the 59 days of January–February).
    """
    cleared: dict[str, int] = {}
    for model in loop.models:
        dag_id = loop.model(model).dag("score")
        runs = sorted({ti["dag_run_id"] for ti in client.all_task_instances(dag_id, state=["skipped"])})
        if runs:  # one transaction for all of them; a clear that failed (database error) is sent again
            client.clear_dag_runs(dag_id, runs)
        cleared[dag_id] = len(runs)
    return cleared


def run_day(run: dict[str, Any]) -> str | None:
    """The day of a run of a generated DAG: its partition key (``YYYY-MM-DD``); None for a run by hand."""
    key = run.get("partition_key")
    return str(key)[:10] if key else None


def wait_for_days(client: AirflowClient, loop: Loop, start: dt.date, through: dt.date,
                  timeout: float = 3600) -> None:
    """Wait until the features backfill's runs for ``start..through`` (by partition key) have all finished
    (success or failure: a day that fails validation must not stall the replay)."""
    need = (through - start).days + 1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A count first (one run per answer): listing every finished run every 2 s kept the api-server busy
        # serialising up to 365 runs per look. The count may include days after ``through`` that finished
        # first, so enough of them only says it is time to list the days.
        if client.count_dag_runs(loop.features_dag, run_type=["backfill"], state=["success", "failed"]) < need:
            time.sleep(2)
            continue
        runs = client.dag_runs(loop.features_dag, run_type=["backfill"], state=["success", "failed"])
        days = {d for r in runs if (d := run_day(r)) and start.isoformat() <= d <= through.isoformat()}
        if len(days) >= need:
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


def bootstrap_champions(client: AirflowClient, loop: Loop, as_of: dt.date, window_days: int,
                        timeout: float = 900) -> dict[str, str]:
    """Each model's first champion: its ``P.M.retrain`` triggered by hand on the window ending at ``as_of``
    (the runs go side by side); the state of each run by model. Raises if one did not succeed."""
    runs = {m: client.trigger(loop.model(m).dag("retrain"),
                              conf={"as_of": as_of.isoformat(), "window_days": window_days})["dag_run_id"]
            for m in loop.models}
    states = {m: client.wait_run(loop.model(m).dag("retrain"), rid, timeout=timeout)["state"]
              for m, rid in runs.items()}
    failed = [m for m, state in states.items() if state != "success"]
    if failed:
        raise RuntimeError(f"the first retrain of {failed} failed; see the task logs of "
                           f"{[loop.model(m).dag('retrain') for m in failed]}")
    return states


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    loop = Loop.of(args.project)
    home = Path(args.home).resolve()
    reset_home(home)
    settings = Settings(home=home)
    config = StackConfig(home=home, parallelism=args.parallelism,
                         extra_env={"LOOPLINE_DRIFT_POLL_SECONDS": str(args.poll_seconds)})
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    with Stack(config, settings) as stack:
        timings["stack_start_s"] = time.monotonic() - t0
        _say(f"stack up: Airflow {stack.config.api_url}  MLflow {stack.config.mlflow_url}  "
             f"(admin password in {stack.password_file})")
        client = client_for(stack)
        wait_for_dags(client, loop)
        unpause(client, loop)
        _say(f"DAGs unpaused: {', '.join(loop.dags)}")

        # One backfill for the whole range, paced by pausing it at each month's end: on SQLite a backfill can
        # only be created while the scheduler, triggerer and dag-processor are held (see Stack.create_backfill),
        # so the demo creates exactly one.
        store = PartitionStore(settings.store_root)
        settle(client, loop, settings=settings)
        t = time.monotonic()
        _say(f"backfill of {loop.features_dag} {args.start} .. {args.end} (POST /api/v2/backfills)")
        bf = stack.create_backfill(client, loop.features_dag, args.start.isoformat(), args.end.isoformat(),
                                   max_active_runs=args.backfill_runs or 2 * args.parallelism)
        backfill_id = int(bf["id"])
        wait_for_days(client, loop, args.start, args.bootstrap_end)
        client.pause_backfill(backfill_id)
        settle(client, loop, settings=settings)
        _say(f"features through {args.bootstrap_end}: training each model's first champion (manual retrain)")
        states = bootstrap_champions(client, loop, args.bootstrap_end, (args.bootstrap_end - args.start).days + 1)
        _say(f"first champions: {states}")
        settle(client, loop, settings=settings)
        _say(f"scoring runs skipped before the first champions, cleared: {clear_skipped_scoring(client, loop)}")
        timings["bootstrap_s"] = time.monotonic() - t

        t = time.monotonic()
        # The rest of the range in one go, while the cleared scoring runs and their drift checks still run: the
        # backfill is not paused again. A month's end only prints how far the features are (pausing and settling
        # there left the slots idle while each month drained: the last days' scoring, drift checks and retrains
        # ran alone). The features run ahead: each scoring and drift DAG runs at most 3 days at once, and a
        # features run takes any slot they leave free (a waiting downstream task goes first: the scheduler
        # queues by logical date, and on SQLite the runs without one sort first).
        client.unpause_backfill(backfill_id)
        for _, hi in months(args.bootstrap_end + dt.timedelta(days=1), args.end, args.chunk_days):
            wait_for_days(client, loop, args.start, hi)
            retrains = sum(len(client.dag_runs(loop.model(m).dag("retrain"))) for m in loop.models)
            _say(f"features through {hi}: {len(store.days(loop.features_dataset, loop.fsv))} feature days, "
                 f"{retrains} retrain runs so far")
        client.wait_backfill(backfill_id, timeout=600)
        settle(client, loop, settings=settings)
        timings["replay_s"] = time.monotonic() - t
        summary = summarize(client, loop, settings)
        summary["range"] = [args.start.isoformat(), args.end.isoformat()]
        summary["exactly_once"] = exactly_once(client, loop, settings)
        summary["task_stats"] = task_stats(client, loop)
    timings["total_s"] = time.monotonic() - t0
    summary["timings"] = {k: round(v, 1) for k, v in timings.items()}
    return summary


def summarize(client: AirflowClient, loop: Loop, settings: Settings) -> dict[str, Any]:
    """Days featured and failed, then per model: days scored, drift alerts, retrains, promotions, rejections and
    the champion — from the store, MLflow and Airflow."""
    store = PartitionStore(settings.store_root)
    failed = [run_day(r) or r["dag_run_id"] for r in client.dag_runs(loop.features_dag, state=["failed"])]
    return {
        "project": loop.name,
        "days_featured": len(store.days(loop.features_dataset, loop.fsv)),
        "days_failed_validation": sorted(failed),
        "models": {m: summarize_model(client, loop, m, settings, store) for m in loop.models},
    }


def summarize_model(client: AirflowClient, loop: Loop, model: str, settings: Settings,
                    store: PartitionStore) -> dict[str, Any]:
    from loopline import steps
    from loopline.reports import list_drift_reports
    from loopline.tracking import CHAMPION, resolve_alias
    from loopline.tracking import client as mlflow_client

    names = loop.model(model)
    spec = loop.project.models[model]
    cfg = steps.model_settings(settings, loop.project, model)
    alerts = [
        {"ds": r["ds"], "model_version": r.get("model_version"),
         "top_features": [[n, round(float(v), 3)] for n, v in r["decision"]["top_features"][:3]]}
        for r in list_drift_reports(store, loop.fsv, dataset=names.drift_dataset) if r["decision"]["drifted"]
    ]
    retrains: list[dict[str, Any]] = []
    promotions: list[dict[str, Any]] = []
    rejections: list[dict[str, Any]] = []
    c = mlflow_client(cfg)
    for mv in sorted(c.search_model_versions(f"name = '{names.registered_model}'"), key=lambda v: int(v.version)):
        tags = mv.tags or {}
        decision = tags.get("loopline.decision", "")
        entry = {
            "version": mv.version, "trigger": tags.get("loopline.trigger", "manual"),
            "window": [tags.get("loopline.window_start"), tags.get("loopline.window_end")],
            "outcome": decision or "undecided", "reason": tags.get("loopline.decision_reason", ""),
            "metric": spec.gate_metric, "val_metric": _float(tags.get(f"loopline.val_{spec.gate_metric}")),
            "drift_ds": tags.get("loopline.drift_ds"),
        }
        retrains.append(entry)
        (promotions if decision == "promote" else rejections if decision == "reject" else []).append(entry)
    skipped = []
    retrain_dag = names.dag("retrain")
    for run in client.dag_runs(retrain_dag):
        states = {ti["task_id"]: ti["state"] for ti in client.task_instances(retrain_dag, run["dag_run_id"])}
        if states.get("plan") == "skipped":
            skipped.append({"run_id": run["dag_run_id"], "run_type": run["run_type"]})
    return {
        "registered_model": names.registered_model,
        "days_scored": len(store.days(names.predictions_dataset, loop.fsv)),
        "drift_alerts": alerts,
        "retrains": retrains,
        "retrains_skipped": skipped,
        "promotions": promotions,
        "rejections": rejections,
        "champion": resolve_alias(cfg, CHAMPION),
    }


def _runs_by_day(client: AirflowClient, dag_id: str, task_id: str) -> dict[str, list[str]]:
    """The runs of ``dag_id`` whose ``task_id`` succeeded, by day (partition key); runs by hand under ``""``."""
    days = {r["dag_run_id"]: run_day(r) or "" for r in client.dag_runs(dag_id)}
    out: dict[str, list[str]] = {}
    for ti in client.all_task_instances(dag_id, state=["success"], task_id=task_id):
        out.setdefault(days.get(ti["dag_run_id"], ""), []).append(ti["dag_run_id"])
    return out


def _once(step: str, days: dict[str, str | None], runs: dict[str, list[str]], expected: set[str]) -> dict[str, Any]:
    """``days``: each day the store has for the step, and the run id its manifest (report) names. A day is
    done exactly once when one run of the DAG succeeded for it and that run wrote it."""
    once = [d for d, rid in days.items() if runs.get(d) == [rid]]
    return {
        "step": step, "days": len(days), "exactly_once": len(once),
        "missing": sorted(expected - set(days)),
        "more_than_once": sorted(d for d in days if len(runs.get(d, [])) > 1),
        "not_by_its_run": sorted(d for d, rid in days.items() if len(runs.get(d, [])) <= 1 and runs.get(d) != [rid]),
        "runs_by_hand": len(runs.get("", [])),
    }


def exactly_once(client: AirflowClient, loop: Loop, settings: Settings) -> dict[str, dict[str, Any]]:
    """Every day featured, scored and checked exactly once: for the features DAG and each model's scoring and
    drift DAGs, the days in the store, how many were done by exactly one successful run of their partition key
    that is also the run the day's manifest (drift report) names, and the exceptions (days missing downstream
    of the step before, done by more than one run, or written by another run than their own)."""
    from loopline.reports import read_drift_report

    store = PartitionStore(settings.store_root)

    def manifests(dataset: str) -> dict[str, str | None]:
        return {d.isoformat(): (store.manifest(dataset, loop.fsv, d).extra or {}).get("run_id")
                for d in store.days(dataset, loop.fsv)}

    featured = manifests(loop.features_dataset)
    out = {loop.features_dag: _once("featured", featured, _runs_by_day(client, loop.features_dag, "build_features"),
                                    set(featured))}
    for model in loop.models:
        names = loop.model(model)
        scored = manifests(names.predictions_dataset)
        out[names.dag("score")] = _once("scored", scored, _runs_by_day(client, names.dag("score"), "score"),
                                        set(featured))
        checked: dict[str, str | None] = {}
        for day in scored:
            report = read_drift_report(store, loop.fsv, day, dataset=names.drift_dataset)
            if report is not None:
                checked[day] = (report.get("run") or {}).get("run_id")
        out[names.dag("drift")] = _once("checked", checked, _runs_by_day(client, names.dag("drift"), "check_drift"),
                                        set(scored))
    return out


def task_stats(client: AirflowClient, loop: Loop) -> dict[str, dict[str, float]]:
    """Per DAG: runs, task instances, summed task run time, and the mean overhead from queued to start."""
    import statistics

    out: dict[str, dict[str, float]] = {}
    for dag_id in loop.dags:
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
    span = "..".join(summary.get("range") or [])
    lines = [
        f"Loopline demo — project {summary['project']}{', ' + span if span else ''}, replayed through Airflow",
        f"  days with features  {summary['days_featured']}",
        f"  days failed         {len(summary['days_failed_validation'])} {summary['days_failed_validation'][:5]}",
    ]
    if "exactly_once" in summary:
        lines += ["", "  every day exactly once (one run per partition key, and that run wrote the day):"]
        for dag_id, o in summary["exactly_once"].items():
            bad = {k: o[k][:5] for k in ("missing", "more_than_once", "not_by_its_run") if o[k]}
            lines.append(f"    {dag_id:<32} {o['step']:<9} {o['exactly_once']}/{o['days']} days"
                         f"{'  ' + str(bad) if bad else ''}")
    for model, m in summary["models"].items():
        lines += [
            "",
            f"  model {model} ({m['registered_model']})",
            f"    days scored         {m['days_scored']}",
            f"    drift alerts        {len(m['drift_alerts'])}",
            f"    retrains            {len(m['retrains'])} "
            f"(+{len(m['retrains_skipped'])} skipped: cooldown or stale event)",
            f"    promotions          {len(m['promotions'])}",
            f"    rejections          {len(m['rejections'])}",
            f"    champion now        v{m['champion']}",
        ]
        if m["retrains"]:
            metric = m["retrains"][0]["metric"]
            lines += ["", f"    version  trigger  window                     outcome  {'val ' + metric:>11}  drift day"]
        for r in m["retrains"]:
            window = f"{r['window'][0]}..{r['window'][1]}"
            val = f"{r['val_metric']:.4f}" if r["val_metric"] is not None else "-"
            lines.append(f"    v{r['version']:<7} {r['trigger']:<8} {window:<26} {r['outcome']:<8} {val:>11}  "
                         f"{r['drift_ds'] or '-'}")
        if m["drift_alerts"]:
            lines += ["", "    first drift alerts (day, model version, top features by PSI):"]
            for a in m["drift_alerts"][:6]:
                top = ", ".join(f"{n} {v:.2f}" for n, v in a["top_features"])
                lines.append(f"    {a['ds']}  v{a['model_version']}  {top}")
    if "timings" in summary:
        lines += ["", "  wall time: " + ", ".join(f"{k}={v}s" for k, v in summary["timings"].items())]
    return "\n".join(lines)


def up(args: argparse.Namespace) -> None:
    home = Path(args.home).resolve()
    settings = Settings(home=home)
    stack = Stack(StackConfig(home=home, parallelism=args.parallelism), settings).start()
    print(f"Airflow UI : {stack.config.api_url}   (user admin, password in {stack.password_file})")
    print(f"MLflow UI  : {stack.config.mlflow_url}")
    print(f"Logs       : {home / 'logs'}  — stop with `make down`")


def _day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loopline_dev.demo", description=__doc__.split("\n")[0])
    p.add_argument("command", nargs="?", default="run", choices=["run", "up", "down"])
    p.add_argument("--project", default=None, help="the project to replay (default: the one in include/projects/)")
    p.add_argument("--home", default=".loopline/demo", help="state folder (wiped by `run`)")
    p.add_argument("--start", type=_day, default=None, help="first day (default: the project's start_date)")
    p.add_argument("--bootstrap-end", type=_day, default=None,
                   help="last day of the first champions' window (default: the last whole month within the "
                        "longest training window from --start)")
    p.add_argument("--end", type=_day, default=None, help="last day (default: the project's end_date)")
    p.add_argument("--chunk-days", type=int, default=31,
                   help="a progress line at each month's end (≥28) or every N days")
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
    args.project = args.project or default_project()
    project = load_project(args.project)
    args.start = args.start or project.start_date
    args.bootstrap_end = args.bootstrap_end or bootstrap_end(project, args.start)
    args.end = args.end or project.end_date
    if args.end is None:
        p.error(f"project {args.project!r} has no end_date: give --end")
    summary = run_demo(args)
    out = Path(args.summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    print(render(summary))
    print(f"\nsummary written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
