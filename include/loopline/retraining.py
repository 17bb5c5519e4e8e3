"""Why and on which window to retrain: cron, drift or a person; with a cooldown against bursts.

Asset-triggered runs have no logical date, so a drift-triggered retrain takes its day from the drift
event. Drift events about a model version that is no longer the champion are ignored (the champion they
complained about is gone). A burst of drift events yields one retrain: the run takes the newest valid
event, and a cooldown (in *data* days, never wall-clock time) skips a retrain whose window ends within
``cooldown_days`` of the newest registered version's window — promoted or rejected alike.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from loopline.settings import Settings
from loopline.store import PartitionStore, as_day

log = logging.getLogger(__name__)


@dataclass
class RetrainRequest:
    """What a retrain run was asked: its run type, drift payloads, and the UI/REST params."""

    run_type: str
    drift_events: list[dict[str, Any]] = field(default_factory=list)
    as_of: str | None = None
    logical_date: dt.date | None = None
    window_days: int = 60
    validation_days: int = 7
    cooldown_days: int = 14
    force: bool = False
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class RetrainPlan:
    """The plan (XCom): ``skip`` holds the reason when there is nothing to do."""

    trigger: str
    as_of: str = ""
    window_days: int = 60
    validation_days: int = 7
    force: bool = False
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    drift: dict[str, Any] | None = None
    champion_version: str | None = None
    ignored_events: list[str] = field(default_factory=list)
    skip: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def latest_window_end(settings: Settings) -> dt.date | None:
    """Newest ``loopline.window_end`` over all registered versions (promoted or rejected)."""
    from mlflow.exceptions import MlflowException

    from loopline.tracking import client

    try:
        versions = client(settings).search_model_versions(f"name = '{settings.model_name}'")
    except MlflowException:
        return None
    ends = [as_day(v.tags["loopline.window_end"]) for v in versions if "loopline.window_end" in (v.tags or {})]
    return max(ends) if ends else None


def plan(request: RetrainRequest, settings: Settings, store: PartitionStore, *,
         features_dataset: str) -> RetrainPlan:
    """Turn a request into a plan; see the module docstring for the rules."""
    from loopline.tracking import CHAMPION, resolve_alias

    champion = resolve_alias(settings, CHAMPION)
    base = RetrainPlan(trigger="", window_days=request.window_days, validation_days=request.validation_days,
                       force=request.force, hyperparameters=request.hyperparameters, champion_version=champion)
    days = store.days(features_dataset, settings.feature_set_version)
    if request.drift_events:
        base.trigger = "drift"
        valid = []
        for event in request.drift_events:
            version = str(event.get("model_version", ""))
            if champion is not None and version != champion:
                note = (f"drift event for {event.get('ds')} about model version {version} ignored: "
                        f"the champion is now {champion}")
                log.info(note)
                base.ignored_events.append(note)
            else:
                valid.append(event)
        if not valid:
            base.skip = "; ".join(base.ignored_events) or "no usable drift event"
            return base
        newest = max(valid, key=lambda e: str(e.get("ds", "")))
        base.drift = newest
        base.as_of = str(newest["ds"])
        top = ", ".join(f"{n} (PSI {float(v):.3f})" for n, v in (newest.get("top_features") or [])[:3])
        base.reason = f"drift on {newest['ds']} for model version {newest.get('model_version')}: {top}"
    elif request.as_of or request.run_type == "manual":
        base.trigger = "manual"
        if request.as_of:
            base.as_of = as_day(request.as_of).isoformat()
        elif days:
            base.as_of = days[-1].isoformat()
        base.reason = "requested by a person"
    else:
        base.trigger = "cron"
        limit = (request.logical_date or dt.date.max) - dt.timedelta(days=1)
        eligible = [d for d in days if d <= limit]
        base.as_of = eligible[-1].isoformat() if eligible else ""
        base.reason = "weekly schedule"
    if not base.as_of:
        base.skip = f"no feature partitions of {features_dataset} to train on yet; backfill its features DAG first"
        return base
    if base.trigger == "drift" and not request.force:
        newest_end = latest_window_end(settings)
        if newest_end is not None:
            gap = (as_day(base.as_of) - newest_end).days
            if gap < request.cooldown_days:
                base.skip = (f"cooldown: the newest model version was trained through {newest_end}, "
                             f"{gap} day(s) before {base.as_of} (< cooldown_days={request.cooldown_days})")
    return base
