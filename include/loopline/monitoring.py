"""Daily drift check: a day's features and scores against the champion's reference profile.

The check reads only that day's partitions and the profile logged with the model version that scored
them, never the training data. Concept drift uses the previous day's labels (flight outcomes are known the
day after), scored with that day's predictions when the same model version made them.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopline.features import FEATURES_DATASET, model_columns
from loopline.scoring import PREDICTIONS_DATASET
from loopline.settings import Settings
from loopline.store import PartitionStore, as_day

if TYPE_CHECKING:
    import pandas as pd

    from loopline.drift import DriftConfig, PerformanceDecay, ReferenceProfile

MONITORING_EXPERIMENT_SUFFIX = "-monitoring"


@dataclass
class DayCheck:
    """The outcome of one day's check: ``skipped`` says why there is none, else ``summary`` (XCom-sized)."""

    ds: str
    skipped: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    model_version: str = ""


@functools.lru_cache(maxsize=8)
def _profile(tracking_uri: str, model_name: str, version: str, home: str) -> ReferenceProfile:
    from loopline.tracking import load_reference_profile

    settings = Settings(home=home, mlflow_tracking_uri=tracking_uri, model_name=model_name)
    return load_reference_profile(settings, version)


def reference_for(settings: Settings, version: str) -> ReferenceProfile:
    return _profile(settings.mlflow_tracking_uri, settings.model_name, version, str(settings.home))


def _labelled_previous_day(
    store: PartitionStore, fsv: str, day: dt.date, model_version: str
) -> pd.DataFrame | None:
    prev = day - dt.timedelta(days=1)
    if not (store.exists(PREDICTIONS_DATASET, fsv, prev) and store.exists(FEATURES_DATASET, fsv, prev)):
        return None
    preds = store.read(PREDICTIONS_DATASET, fsv, prev, columns=["flight_id", "score", "model_version"])
    if preds.empty or set(preds["model_version"].astype(str)) != {model_version}:
        return None
    labels = store.read(FEATURES_DATASET, fsv, prev, columns=["flight_id", "label"])
    joined = preds.merge(labels, on="flight_id", how="inner")
    return joined if joined["label"].nunique() == 2 else None


def performance_for(
    store: PartitionStore, fsv: str, day: dt.date, model_version: str, profile: ReferenceProfile,
    config: DriftConfig,
) -> PerformanceDecay | None:
    """Concept drift on the previous day's labels, or None when they are not available for this model."""
    from loopline.drift import performance_decay, score_metric

    joined = _labelled_previous_day(store, fsv, day, model_version)
    reference = profile.validation_metrics.get(config.performance_metric)
    if joined is None or reference is None:
        return None
    current = score_metric(joined["label"].to_numpy(), joined["score"].to_numpy(), config.performance_metric)
    return performance_decay(reference, current, config)


def check_day(store: PartitionStore, settings: Settings, ds: str | dt.date,
              config: DriftConfig | None = None) -> DayCheck:
    """Compare one day against the reference of the model version that scored it; write its report."""

    from loopline.drift import DriftConfig, compare
    from loopline.reports import write_drift_report

    day = as_day(ds)
    fsv = settings.feature_set_version
    cfg = config or DriftConfig.from_env()
    if not store.exists(PREDICTIONS_DATASET, fsv, day):
        return DayCheck(day.isoformat(), skipped="no predictions partition (scoring skipped or failed that day)")
    if not store.exists(FEATURES_DATASET, fsv, day):
        return DayCheck(day.isoformat(), skipped="no features partition")
    preds = store.read(PREDICTIONS_DATASET, fsv, day)
    if preds.empty:
        return DayCheck(day.isoformat(), skipped="the day has no predictions (no flights)")
    model_version = str(preds["model_version"].iloc[0])
    profile = reference_for(settings, model_version)
    feats = store.read(FEATURES_DATASET, fsv, day, columns=["flight_id", *model_columns(fsv)])
    current = feats.merge(preds[["flight_id", "score"]], on="flight_id", how="left")
    perf = performance_for(store, fsv, day, model_version, profile, cfg)
    report = compare(profile, current.drop(columns=["flight_id"]), config=cfg, performance=perf)
    body = report.to_dict()
    body.update({
        "ds": day.isoformat(), "model_name": settings.model_name, "model_version": model_version,
        "feature_set_version": fsv, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": len(current),
    })
    uri = write_drift_report(store, fsv, day, body, report.to_html(title=f"Loopline drift — {day}"))
    decision = report.decision
    summary = {
        "ds": day.isoformat(), "model_version": model_version, "drifted": decision.drifted,
        "top_features": [[n, round(float(v), 6)] for n, v in decision.top_features[:5]],
        "share_drifted": round(float(decision.share_drifted), 6), "reasons": list(decision.reasons[:3]),
        "uri": uri,
    }
    metrics: dict[str, float] = {"share_drifted": float(decision.share_drifted), "drifted": float(decision.drifted)}
    for name, f in report.features.items():
        for key in ("psi", "js"):
            value = float(getattr(f, key))
            if math.isfinite(value):  # NaN is not a point on a chart
                metrics[f"{key}_{name}"] = value
    if perf is not None:
        metrics[f"current_{perf.metric}"] = perf.current
    return DayCheck(day.isoformat(), summary=summary, metrics=metrics, model_version=model_version)


def log_drift_metrics(settings: Settings, checks: list[DayCheck]) -> None:
    """Log each day's scores to MLflow: one monitoring run per model version, one step per day.

    Step is the day's ordinal and the timestamp the day itself, so the MLflow UI draws a time series per
    feature (``psi_<feature>``, ``js_<feature>``, ``share_drifted``) over data time, not wall time.
    """
    import mlflow
    from mlflow.entities import Metric

    from loopline.tracking import client, configure

    configure(settings)
    c = client(settings)
    name = f"{settings.experiment_name}{MONITORING_EXPERIMENT_SUFFIX}"
    exp = c.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else c.create_experiment(name)
    by_version: dict[str, list[DayCheck]] = {}
    for check in checks:
        if check.metrics:
            by_version.setdefault(check.model_version, []).append(check)
    for version, version_checks in by_version.items():
        runs = mlflow.search_runs(
            [exp_id], filter_string=f"tags.`loopline.monitored_version` = '{version}'", output_format="list",
            max_results=1,
        )
        run_id = runs[0].info.run_id if runs else c.create_run(
            exp_id, run_name=f"monitor {settings.model_name} v{version}",
            tags={"loopline.monitored_version": version, "loopline.model_name": settings.model_name},
        ).info.run_id
        batch = []
        for check in version_checks:
            day = as_day(check.ds)
            ts = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
            batch.extend(Metric(k, v, ts, day.toordinal()) for k, v in check.metrics.items())
        for start in range(0, len(batch), 900):  # MLflow accepts at most 1000 metrics per batch
            c.log_batch(run_id, metrics=batch[start:start + 900])
