"""``loopline run PROJECT``: the whole loop of a project in one process, without Airflow.

Day by day: build and validate the features, then for each model train the first champion once its first
training window is complete, score the day with the champion, check drift, and retrain on drift (after the
cooldown) and on the retrain cron — with the same step functions (:mod:`loopline.steps`) and the same
promotion gate as the generated DAGs. It is how a user tries a new project in minutes, and what tests use.

A day whose data fails (a missing column, a failed suite) is recorded with its reason and the run goes on;
nothing is written for that day.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopline.project.spec import Project
from loopline.settings import Settings
from loopline.store import PartitionStore

log = logging.getLogger(__name__)


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project, "start": self.start, "end": self.end,
            "days_featured": self.days_featured, "days_empty": self.days_empty, "days_failed": self.days_failed,
            "models": {name: {"days_scored": m.days_scored, "drift_alerts": m.drift_alerts, "retrains": m.retrains,
                              "promotions": m.promotions, "rejections": m.rejections, "skipped": m.skipped,
                              "champion": m.champion}
                       for name, m in self.models.items()},
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
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
        lines.append(f"  time {total:.1f} s: {split}")
        return "\n".join(lines)


def _cron_fires_on(cron: str | None, day: dt.date) -> bool:
    """Whether a cron (UTC) fires at some moment of ``day``."""
    if not cron or cron == "@once":
        return False
    from croniter import croniter

    start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    nxt = croniter(cron, start - dt.timedelta(seconds=1)).get_next(dt.datetime)
    return bool(nxt < start + dt.timedelta(days=1))


def run_project(project: Project, start: dt.date, end: dt.date, *, settings: Settings | None = None,
                store: PartitionStore | None = None) -> RunSummary:
    """Run the loop of ``project`` over ``start..end``; returns the summary (also the ``--summary`` JSON)."""
    from loopline import steps
    from loopline.project import project_names
    from loopline.retraining import latest_window_end
    from loopline.steps import store_for
    from loopline.tracking import CHAMPION, resolve_alias

    cfg = settings or Settings.from_env()
    st = store or store_for(cfg)
    summary = RunSummary(project.project, start.isoformat(), end.isoformat())
    for name in project.models:
        model_cfg = steps.model_settings(cfg, project, name)
        # A run that continues an earlier one keeps its champion and its cooldown (the registry remembers both).
        summary.models[name] = ModelLog(champion=resolve_alias(model_cfg, CHAMPION),
                                        last_window_end=latest_window_end(model_cfg))
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
        for name in project.models:
            _model_day(project, name, st, cfg, day, first_day, summary)
        day += dt.timedelta(days=1)
    return summary


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
