"""``loopline run PROJECT``: the whole loop of a project in one process, without Airflow.

Day by day: build and validate the features, then for each model train the first champion once its first
training window is complete, score the day with the champion, check drift, and retrain on drift (after the
cooldown) and on the retrain cron — with the same step functions (:mod:`loopline.steps`) and the same
promotion gate as the generated DAGs. It is how a user tries a new project in minutes, and what tests use.

A day whose data fails (a missing column, a failed suite) is recorded with its reason and the run goes on;
nothing is written for that day.

Each model runs in its own lane: with ``workers`` > 1 (the default on a machine with more than one core), a
process per model takes the days in order from the features loop, so the two models of a project fit, score
and check drift on two cores at once while the next days' features are built. A model's days only read the
features partitions (already committed when the day is handed over) and its own registry entries, so the
lanes make the same decisions in the same order as one process does (``workers=1``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import os
import queue
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopline.project.spec import Project
from loopline.settings import Settings
from loopline.store import PartitionStore

log = logging.getLogger(__name__)
# Rows of feature and prediction partitions a model's process keeps in memory (PartitionStore.keep_frames):
# enough for a 60-day training window and a 14-day drift window of a project of about 1,000 rows a day, which
# the loop reads again every week and every day (about 60 MB for 15 feature columns and two labels).
KEEP_ROWS = 150_000


@dataclass
class ModelLog:
    days_scored: int = 0
    drift_alerts: list[str] = field(default_factory=list)
    retrains: list[dict[str, Any]] = field(default_factory=list)
    promotions: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    champion: str | None = None
    last_window_end: dt.date | None = None


@dataclass
class RunSummary:
    project: str
    start: str
    end: str
    days_featured: int = 0
    days_empty: int = 0
    days_failed: list[dict[str, str]] = field(default_factory=list)
    models: dict[str, ModelLog] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    wall_seconds: float = 0.0
    lanes: int = 1
    lane_seconds: dict[str, float] = field(default_factory=dict)  # each lane process's wall time, by its models

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project, "start": self.start, "end": self.end,
            "days_featured": self.days_featured, "days_empty": self.days_empty, "days_failed": self.days_failed,
            "models": {name: {"days_scored": m.days_scored, "drift_alerts": m.drift_alerts, "retrains": m.retrains,
                              "promotions": m.promotions, "rejections": m.rejections, "skipped": m.skipped,
                              "champion": m.champion}
                       for name, m in self.models.items()},
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "wall_seconds": round(self.wall_seconds, 3), "lanes": self.lanes, "lane_seconds": self.lane_seconds,
        }

    def to_table(self) -> str:
        lines = [f"Loopline run — project {self.project}, {self.start}..{self.end}",
                 f"  days featured {self.days_featured}, empty {self.days_empty}, failed {len(self.days_failed)}"]
        for f in self.days_failed[:10]:
            lines.append(f"    {f['ds']}: {f['error'].splitlines()[0][:160]}")
        for name, m in self.models.items():
            lines.append(f"  model {name}: champion v{m.champion or '-'}, days scored {m.days_scored}, drift alerts "
                         f"{len(m.drift_alerts)}, retrains {len(m.retrains)}, promotions {len(m.promotions)}, "
                         f"rejections {len(m.rejections)}")
            lines.append("    version  trigger  as_of       outcome  metric")
            for r in m.retrains:
                value = r.get("candidate")
                shown = f"{r.get('metric')} {value:.4f}" if isinstance(value, float) else r.get("reason", "")[:60]
                lines.append(f"    v{r.get('version', '-'):<7} {r['trigger']:<8} {r['as_of']}  "
                             f"{r.get('action', 'failed'):<8} {shown}")
        total = sum(self.seconds.values())
        split = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.seconds.items(), key=lambda kv: -kv[1]))
        where = f" (summed over {self.lanes} processes)" if self.lanes > 1 else ""
        lines.append(f"  wall time {self.wall_seconds:.1f} s; step time {total:.1f} s{where}: {split}")
        if self.lane_seconds:
            lines.append("  wall time of each model lane: " + ", ".join(f"{k} {v:.1f} s"
                                                                       for k, v in self.lane_seconds.items()))
        return "\n".join(lines)


def _cron_fires_on(cron: str | None, day: dt.date) -> bool:
    """Whether a cron (UTC) fires at some moment of ``day``."""
    if not cron or cron == "@once":
        return False
    from croniter import croniter

    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    nxt = croniter(cron, start - dt.timedelta(seconds=1)).get_next(dt.datetime)
    return bool(nxt < start + dt.timedelta(days=1))


def default_workers(project: Project) -> int:
    """One process per model, at most one per core (1: everything in the calling process)."""
    return max(1, min(len(project.models), os.cpu_count() or 1))


def run_project(project: Project, start: dt.date, end: dt.date, *, settings: Settings | None = None,
                store: PartitionStore | None = None, workers: int | None = None) -> RunSummary:
    """Run the loop of ``project`` over ``start..end``; returns the summary (also the ``--summary`` JSON).

    ``workers``: processes for the models' lanes (default :func:`default_workers`); 1, or a ``store`` of the
    caller's (which a lane process cannot share), runs every model in the calling process.
    """
    from loopline import steps
    from loopline.retraining import latest_window_end
    from loopline.steps import store_for
    from loopline.tracking import CHAMPION, resolve_alias

    began = time.perf_counter()
    cfg = settings or Settings.from_env()
    st = store or store_for(cfg).keep_frames(KEEP_ROWS)
    summary = RunSummary(project.project, start.isoformat(), end.isoformat())
    for name in project.models:
        model_cfg = steps.model_settings(cfg, project, name)
        # A run that continues an earlier one keeps its champion and its cooldown (the registry remembers both).
        summary.models[name] = ModelLog(champion=resolve_alias(model_cfg, CHAMPION),
                                        last_window_end=latest_window_end(model_cfg))
    lanes = min(len(project.models), default_workers(project) if workers is None else max(1, workers))
    summary.lanes = 1 if store is not None else lanes
    pool = _Lanes(project, cfg, summary) if summary.lanes > 1 else None
    try:
        _days(project, st, cfg, start, end, summary, pool)
        if pool is not None:
            pool.finish(summary)
    finally:
        if pool is not None:
            pool.close()
    summary.wall_seconds = time.perf_counter() - began
    return summary


def _days(project: Project, st: PartitionStore, cfg: Settings, start: dt.date, end: dt.date, summary: RunSummary,
          pool: _Lanes | None) -> None:
    from loopline import steps
    from loopline.project import project_names

    # The first training window counts from the first day already in the store, not from this run's start.
    built = [d for d in st.days(project_names(project).features_dataset, project.features.version) if d < start]
    first_day: dt.date | None = built[0] if built else None
    day = start
    while day <= end:
        t0 = time.perf_counter()
        try:
            result = steps.features_day(project, st, day)
        except (steps.ProjectDataError, ValueError) as exc:
            summary.days_failed.append({"ds": day.isoformat(), "error": str(exc)})
            log.warning("%s", exc)
            summary.seconds["features"] += time.perf_counter() - t0
            day += dt.timedelta(days=1)
            continue
        summary.seconds["features"] += time.perf_counter() - t0
        if result.status == "empty":
            summary.days_empty += 1
            day += dt.timedelta(days=1)
            continue
        summary.days_featured += 1
        first_day = first_day or day
        if pool is not None:
            pool.hand(day, first_day)  # the day's partition is committed: the lanes may read it
        else:
            for name in project.models:
                _model_day(project, name, st, cfg, day, first_day, summary)
        day += dt.timedelta(days=1)


class LaneError(RuntimeError):
    """A model's lane process failed; the message holds its traceback."""


class _Lanes:
    """Processes that run the models' days (:func:`_model_day`) in the order the features loop hands them over.

    Models are dealt round-robin to ``summary.lanes`` processes (``spawn``: a fresh interpreter, not a fork of
    one holding MLflow's threads). Each lane starts from the model logs of ``summary`` and sends them back,
    with its step seconds, when the days end; a lane that fails sends its traceback, which ends the run.
    """

    def __init__(self, project: Project, cfg: Settings, summary: RunSummary) -> None:
        from loopline import tracking

        tracking.configure(cfg)  # the experiment exists before two processes could both create it
        ctx = multiprocessing.get_context("spawn")
        names = list(project.models)
        self.groups = [names[i::summary.lanes] for i in range(summary.lanes)]
        self.results: Any = ctx.Queue()
        self.inboxes: list[Any] = []
        self.procs: list[Any] = []
        self.done: set[int] = set()
        for index, group in enumerate(self.groups):
            inbox = ctx.Queue()
            logs = {name: summary.models[name] for name in group}
            proc = ctx.Process(target=_lane, args=(index, project, cfg, logs, inbox, self.results), daemon=True,
                               name=f"loopline-{project.project}-{'+'.join(group)}")
            proc.start()
            self.inboxes.append(inbox)
            self.procs.append(proc)

    def hand(self, day: dt.date, first_day: dt.date) -> None:
        self._receive(block=False)  # a lane that already failed ends the run now, not after the last day
        for inbox in self.inboxes:
            inbox.put((day, first_day))

    def finish(self, summary: RunSummary) -> None:
        for inbox in self.inboxes:
            inbox.put(None)
        while len(self.done) < len(self.procs):
            for index, models, seconds in self._receive(block=True):
                summary.models.update(models)
                summary.lane_seconds["+".join(self.groups[index])] = round(seconds.pop("lane", 0.0), 3)
                for step, value in seconds.items():
                    summary.seconds[step] += value

    def _receive(self, *, block: bool) -> list[tuple[int, dict[str, ModelLog], dict[str, float]]]:
        got: list[tuple[int, dict[str, ModelLog], dict[str, float]]] = []
        while True:
            try:
                message = self.results.get(timeout=5) if block and not got else self.results.get_nowait()
            except queue.Empty:
                dead = [i for i, p in enumerate(self.procs) if i not in self.done and not p.is_alive()]
                if dead and self.results.empty():
                    raise LaneError(f"the lane of model(s) {', '.join(self.groups[dead[0]])} ended without a "
                                    f"result (exit code {self.procs[dead[0]].exitcode})") from None
                if block and not got:
                    continue
                return got
            index, status, payload, seconds = message
            if status == "error":
                raise LaneError(f"the lane of model(s) {', '.join(self.groups[index])} failed:\n{payload}")
            self.done.add(index)
            got.append((index, payload, seconds))

    def close(self) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)


def _lane(index: int, project: Project, cfg: Settings, logs: dict[str, ModelLog], inbox: Any, results: Any) -> None:
    """The body of a lane process: :func:`_model_day` for its models on each day handed over, until ``None``."""
    began = time.perf_counter()
    try:
        from loopline.steps import store_for

        store = store_for(cfg).keep_frames(KEEP_ROWS)
        summary = RunSummary(project.project, "", "")
        summary.models.update(logs)
        _warm(project, cfg, list(logs))
        while (message := inbox.get()) is not None:
            day, first_day = message
            for name in logs:
                _model_day(project, name, store, cfg, day, first_day, summary)
        summary.seconds["lane"] = time.perf_counter() - began
        results.put((index, "ok", summary.models, dict(summary.seconds)))
    except BaseException:  # whatever it was, the run must end with it, not wait for this lane
        results.put((index, "error", traceback.format_exc(), {}))


def _warm(project: Project, cfg: Settings, names: list[str]) -> None:
    """Import what a model's days use and open its MLflow store now, while the features loop builds the first
    training window (the lanes have nothing else to do until then), not when the first champion is due."""
    import mlflow.sklearn  # noqa: F401
    import sklearn.compose
    import sklearn.ensemble  # noqa: F401
    import skops.io  # noqa: F401

    from loopline import monitoring, promotion, scoring, steps, tracking, training  # noqa: F401

    for name in names:
        tracking.configure(steps.model_settings(cfg, project, name))


def _model_day(project: Project, name: str, store: PartitionStore, cfg: Settings, day: dt.date,
               first_day: dt.date, summary: RunSummary) -> None:
    from loopline import steps

    spec, m = project.models[name], summary.models[name]
    as_of = day - dt.timedelta(days=spec.label_lag_days)
    window_ready = (as_of - first_day).days + 1 >= spec.training.window_days
    if m.champion is None and window_ready:
        _retrain(project, name, store, cfg, as_of, "manual", summary)
    elif m.champion is not None and _cron_fires_on(spec.schedules.retrain, day) and window_ready:
        _retrain(project, name, store, cfg, as_of, "cron", summary)
    if m.champion is None:
        return
    t0 = time.perf_counter()
    steps.score_model_day(project, name, store, cfg, day, model_version=m.champion)
    m.days_scored += 1
    summary.seconds["score"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    check = steps.drift_model_day(project, name, store, cfg, day)
    summary.seconds["drift"] += time.perf_counter() - t0
    if not check.summary.get("drifted"):
        return
    m.drift_alerts.append(day.isoformat())
    cooldown = spec.drift.cooldown_days
    if m.last_window_end is not None and (as_of - m.last_window_end).days < cooldown:
        m.skipped.append({"ds": day.isoformat(), "reason": f"cooldown: the newest version's window ends "
                                                            f"{m.last_window_end}, within {cooldown} days"})
        return
    if window_ready:
        _retrain(project, name, store, cfg, as_of, "drift", summary)


def _retrain(project: Project, name: str, store: PartitionStore, cfg: Settings, as_of: dt.date, trigger: str,
             summary: RunSummary) -> None:
    from loopline import steps
    from loopline.training import TrainingDataError

    m = summary.models[name]
    entry: dict[str, Any] = {"trigger": trigger, "as_of": as_of.isoformat()}
    t0 = time.perf_counter()
    try:
        registered = steps.train_model(project, name, store, cfg, as_of, context={"trigger": trigger})
    except TrainingDataError as exc:
        entry.update(action="not trained", reason=str(exc))
        m.retrains.append(entry)
        m.last_window_end = as_of
        summary.seconds["train"] += time.perf_counter() - t0
        return
    summary.seconds["train"] += time.perf_counter() - t0
    m.last_window_end = as_of
    t0 = time.perf_counter()
    result = steps.gate(project, name, store, cfg, registered.version, context={"trigger": trigger})
    summary.seconds["gate"] += time.perf_counter() - t0
    entry.update(result.as_dict())
    m.retrains.append(entry)
    (m.promotions if result.action == "promote" else m.rejections).append(entry)
    if result.action == "promote":
        m.champion = registered.version


def write_summary(summary: RunSummary, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(summary.as_dict(), indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
