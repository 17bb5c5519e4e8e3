"""Daily drift check: the trailing window's features and scores against the champion's reference profile.

The check for day d reads the partitions of d - drift_window_days + 1 .. d and the profile logged with the
model version that scored d — never the training data. Why a window: features that are constant within a
day (a day's weekday, its temperature) make any single day look drifted against weeks of training data; a
two-week window keeps the share of drifted features inside the training season well below the default 0.5
(see README for the measured figures). Concept drift uses the window's labels before d (a day's outcomes
are known the next day).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.cache import cache_dir, prune_oldest
from loopline.settings import Settings
from loopline.store import PartitionStore, as_day

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd

    from loopline.drift import DriftConfig, PerformanceDecay, ReferenceProfile

log = logging.getLogger(__name__)

MONITORING_EXPERIMENT_SUFFIX = "-monitoring"


@dataclass
class DayCheck:
    """The outcome of one day's check: ``skipped`` says why there is none, else ``summary`` (XCom-sized)."""

    ds: str
    skipped: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    model_version: str = ""


@dataclass(frozen=True)
class Monitored:
    """What a drift check needs to know about a model: where its data is and how to read its labels
    (``loopline.steps.monitored_spec`` of a project model)."""

    features_dataset: str
    predictions_dataset: str
    reports_dataset: str
    version: str
    columns: tuple[str, ...]
    keys: tuple[str, ...]
    label: str
    positive: Any
    task: str
    window_days: int
    model_name: str
    metric: str = ""
    """The metric the champion is judged on (the gate metric); empty: the task type's default."""


@functools.lru_cache(maxsize=8)
def _profile(tracking_uri: str, model_name: str, version: str, home: str) -> ReferenceProfile:
    from loopline.tracking import load_reference_profile

    settings = Settings(home=Path(home), mlflow_tracking_uri=tracking_uri, model_name=model_name)
    return load_reference_profile(settings, version)


def reference_for(settings: Settings, version: str) -> ReferenceProfile:
    return _profile(settings.mlflow_tracking_uri, settings.model_name, version, str(settings.home))


def window_days(settings: Settings | int, day: dt.date) -> list[dt.date]:
    """The days a check of ``day`` covers: ``day - window + 1 .. day`` (window: ``drift_window_days``)."""
    n = settings if isinstance(settings, int) else settings.drift_window_days
    return [day - dt.timedelta(days=i) for i in range(n - 1, -1, -1)]


# A day's frames as the drift check uses them, by the commits they were read from: each daily check reads the
# trailing window (14 days by default), so without this a day is read and joined again by the next 13 checks.
# The key holds the day's manifests in full (content hash, files, written_at): a re-written day is a new commit
# and is read again; a day is never served from here once its partition changed.
_DAY_CACHE_SIZE = 64
_day_cache: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()
_day_cache_lock = threading.Lock()


def clear_window_cache() -> None:
    """Forget the window days :func:`_window` kept in this process."""
    with _day_cache_lock:
        _day_cache.clear()


# The same frames on local disk, for the next drift task (each Airflow task is a new process, and each reads
# the 13 days the previous one read): one Arrow IPC file per day and frame, under a name derived from the same
# key, so a re-written day is never served from here either. Written atomically (temporary file, rename). A
# write that finds more than WINDOW_CACHE_FILES files removes the oldest down to three quarters of it: the
# files are stat-ed and sorted once per quarter of the limit, not on every write (that was 12 ms a write).
WINDOW_CACHE_FILES = 1024


def window_cache_dir(settings: Settings) -> Path:
    return cache_dir(settings, "drift-window")


def _disk_get(folder: Path, digest: str) -> tuple[Any, Any] | None:
    import pyarrow as pa

    def load(path: Path) -> Any:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all().to_pandas()

    features = folder / f"{digest}.features.arrow"
    scored = folder / f"{digest}.scored.arrow"
    try:
        # The scored file, when the day has one, is renamed into place before the features file.
        if not features.is_file():
            return None
        return load(features), (load(scored) if scored.is_file() else None)
    except (OSError, pa.ArrowInvalid):  # pruned meanwhile, or unreadable: read the store
        return None


def _disk_put(folder: Path, digest: str, frames: tuple[Any, Any]) -> None:
    import tempfile

    import pyarrow as pa

    folder.mkdir(parents=True, exist_ok=True)
    for kind, frame in (("scored", frames[1]), ("features", frames[0])):
        if frame is None:
            continue
        table = pa.Table.from_pandas(frame, preserve_index=False)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".arrow")
        try:
            with os.fdopen(fd, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
            os.replace(tmp, folder / f"{digest}.{kind}.arrow")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    prune_oldest(folder, WINDOW_CACHE_FILES, suffix=".arrow")


def _keep(key: tuple[Any, ...], frames: tuple[Any, Any]) -> None:
    with _day_cache_lock:
        _day_cache[key] = frames
        _day_cache.move_to_end(key)
        while len(_day_cache) > _DAY_CACHE_SIZE:
            _day_cache.popitem(last=False)


def _day_frames(store: PartitionStore, m: Monitored, d: dt.date, model_version: str,
                disk: Path | None = None) -> tuple[Any, Any] | None:
    """The day's features and its scores by ``model_version`` joined with their labels (None: not scored by
    it); None for a day without features. With ``disk`` (a :func:`window_cache_dir`) the frames are also read
    from and kept on local disk for other processes."""
    import hashlib

    import pandas as pd

    from loopline.store import PartitionNotFoundError
    from loopline.tasktypes import task_type

    try:
        fman = store.manifest(m.features_dataset, m.version, d)
    except PartitionNotFoundError:
        return None
    try:
        pman: str | None = store.manifest(m.predictions_dataset, m.version, d).to_json()
    except PartitionNotFoundError:
        pman = None
    key = (store.root, m, d, model_version, fman.to_json(), pman)
    with _day_cache_lock:
        hit = _day_cache.get(key)
        if hit is not None:
            _day_cache.move_to_end(key)
            return hit
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:40]
    if disk is not None and (kept := _disk_get(disk, digest)) is not None:
        _keep(key, kept)
        return kept
    keys = list(m.keys)
    f = store.read(m.features_dataset, m.version, d, columns=[*keys, m.label, *m.columns])
    scored = None
    if pman is not None:
        p = store.read(m.predictions_dataset, m.version, d, columns=[*keys, "score", "model_version"])
        p = p[p["model_version"].astype(str) == model_version]
        if len(p):
            label = task_type(m.task).labels(f[m.label], m.positive)
            p = p.reset_index(drop=True)
            if len(p) == len(f) and p[keys].equals(f[keys].reset_index(drop=True)):
                # Scoring writes the day's rows in the features' order, and a committed features day has unique
                # keys (its suite checks them): the join is the rows side by side (~6 ms a day less than merge).
                scored = p.assign(label=label, ds=d)
            else:
                labels = pd.DataFrame({k: f[k] for k in keys})
                labels["label"] = label
                scored = p.merge(labels, on=keys).assign(ds=d)
    _keep(key, (f, scored))
    if disk is not None:
        try:
            _disk_put(disk, digest, (f, scored))
        except OSError as exc:  # a full or read-only disk costs the next task a read, never this check
            log.warning("drift window cache: could not keep %s (%s)", d, exc)
    return f, scored


def _window(store: PartitionStore, m: Monitored, days: list[dt.date], model_version: str,
            disk: Path | None = None) -> tuple[Any, Any, list[str]]:
    """Features of the window's days, and the scores (with labels) of the days this model version scored."""
    import pandas as pd

    feats, scored, used = [], [], []
    for d in days:
        frames = _day_frames(store, m, d, model_version, disk)
        if frames is None:
            continue
        feats.append(frames[0])
        used.append(d.isoformat())
        if frames[1] is not None:
            scored.append(frames[1])
    features = pd.concat(feats, ignore_index=True) if feats else pd.DataFrame()
    scores = pd.concat(scored, ignore_index=True) if scored else pd.DataFrame()
    return features, scores, used


def performance_for(
    scores: pd.DataFrame, day: dt.date, profile: ReferenceProfile, config: DriftConfig,
) -> PerformanceDecay | None:
    """Concept drift: the model's metric on the window's labelled days before ``day`` (labels of a day are
    known the next day) against its training-time validation metric; None when not measurable."""
    from loopline.drift import performance_decay, score_metric

    reference = profile.validation_metrics.get(config.performance_metric)
    if reference is None or scores.empty:
        return None
    labelled = scores[(scores["ds"] < day) & scores["label"].notna()]
    if labelled["label"].nunique() < 2 or len(labelled) < 500:
        return None
    current = score_metric(labelled["label"].to_numpy(), labelled["score"].to_numpy(), config.performance_metric)
    return performance_decay(reference, current, config)


def labelled_performance(scores: pd.DataFrame, day: dt.date, task: str, metric: str,
                         validation: Mapping[str, float]) -> dict[str, Any]:
    """The champion's ``metric`` on the labelled rows it scored in the window before ``day``, beside its
    training-time validation value: the report's ``performance`` block (a point on the page's chart).

    Computed with the task type's own metrics (binary and regression alike), whenever at least one labelled row
    exists; ``value`` is None with a ``note`` saying why otherwise. ``rows`` and ``days`` say what it stands on.
    """
    import math

    from loopline.tasktypes import LabelError, task_type

    tt = task_type(task)
    name = metric or tt.default_metric
    reference = validation.get(name)
    out: dict[str, Any] = {
        "metric": name, "higher_is_better": tt.metrics.get(name, True),
        "validation": float(reference) if reference is not None and math.isfinite(reference) else None,
        "value": None, "rows": 0, "days": [], "note": None,
    }
    labelled = scores[(scores["ds"] < day) & scores["label"].notna()] if not scores.empty else scores
    if labelled.empty:
        out["note"] = "no labelled row scored by this version before the day in the window"
        return out
    out["rows"] = len(labelled)
    out["days"] = sorted({d.isoformat() for d in labelled["ds"]})
    try:
        value = tt.evaluate(labelled["label"].to_numpy(dtype="float64"), labelled["score"].to_numpy(dtype="float64"),
                            [name])[name]
    except (LabelError, ValueError) as exc:
        out["note"] = f"{name} not measurable on {len(labelled)} labelled row(s): {exc}"
        return out
    out["value"] = float(value) if math.isfinite(value) else None
    return out


def check_day(store: PartitionStore, settings: Settings, ds: str | dt.date, *, monitored: Monitored,
              config: DriftConfig | None = None, extra: Mapping[str, Any] | None = None,
              window_on_disk: bool = False) -> DayCheck:
    """Compare the window ending at ``ds`` with the reference of the model version that scored ``ds``.

    ``extra`` is recorded as the report's ``run`` (the Airflow task records its DAG run and try there).
    ``window_on_disk``: read and keep the window's days in :func:`window_cache_dir` as well as in memory.

    Features are compared over every day of the window (they do not depend on the model). Prediction drift
    and performance use only the days this model version scored, and need ``min_scored_days`` of them (half
    the window) — right after a promotion the new champion has too few days to judge its scores.
    """
    from loopline.drift import DriftConfig, DriftReport, compare
    from loopline.drift.decision import decide
    from loopline.reports import write_drift_report

    day = as_day(ds)
    m = monitored
    fsv = m.version
    cfg = config or DriftConfig.from_env(None, drift_share=float(os.environ.get("LOOPLINE_DRIFT_SHARE",
                                                                                 settings.drift_share)))
    if not store.exists(m.predictions_dataset, fsv, day):
        return DayCheck(day.isoformat(), skipped="no predictions partition (scoring skipped or failed that day)")
    if not store.exists(m.features_dataset, fsv, day):
        return DayCheck(day.isoformat(), skipped="no features partition")
    preds = store.read(m.predictions_dataset, fsv, day, columns=["model_version"])
    if preds.empty:
        return DayCheck(day.isoformat(), skipped="the day has no predictions (no rows)")
    model_version = str(preds["model_version"].iloc[0])
    profile = reference_for(settings, model_version)
    days = window_days(m.window_days, day)
    features, scores, used = _window(store, m, days, model_version,
                                     window_cache_dir(settings) if window_on_disk else None)
    feature_cols = [c for c in m.columns if c in profile.features]
    compared = compare(profile, features[feature_cols], config=cfg, columns=feature_cols)
    by_feature = compared.features
    # Features the engine could not compare (a changed dtype, nothing to score) count as drifted: keep them.
    not_compared, skipped = dict(compared.decision.not_compared), dict(compared.skipped)
    min_scored_days = max(1, m.window_days // 2)
    scored_days = int(scores["ds"].nunique()) if not scores.empty else 0
    notes = [f"window {days[0]}..{day}: {len(used)} day(s) with features, {scored_days} scored by v{model_version}"]
    perf = None
    if "score" in profile.features and scored_days >= min_scored_days:
        scored = compare(profile, scores[["score"]], config=cfg, columns=["score"])
        by_feature.update(scored.features)
        not_compared.update(scored.decision.not_compared)
        skipped.update(scored.skipped)
        perf = performance_for(scores, day, profile, cfg)
    else:
        notes.append(f"prediction drift and performance not judged: fewer than {min_scored_days} days scored "
                     f"by v{model_version} in the window")
    decision = decide(by_feature, cfg, perf, not_compared=not_compared)
    min_days = max(1, m.window_days // 2)
    if len(used) < min_days and decision.drifted:
        # A window of a few days cannot look like weeks of training data (the first days of history).
        decision.drifted = False
        decision.reasons.insert(0, f"not judged: only {len(used)} day(s) of features in the window "
                                   f"(need {min_days}); the scores are reported but do not fire retraining")
    report = DriftReport(features=by_feature, decision=decision, binning="reference",
                         n_reference=profile.n_rows, n_current=len(features), config=cfg, skipped=skipped)
    body = report.to_dict()
    body.update({
        "ds": day.isoformat(), "model_name": m.model_name, "model_version": model_version,
        "feature_set_version": fsv, "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "window": {"start": days[0].isoformat(), "end": day.isoformat(), "days": used,
                   "scored_days": scored_days},
        "notes": notes,
        "performance": labelled_performance(scores, day, m.task, m.metric, profile.validation_metrics),
    })
    if extra:
        body["run"] = dict(extra)
    uri = write_drift_report(store, fsv, day, body, report.to_html(title=f"Loopline drift — {m.model_name} {day}"),
                             dataset=m.reports_dataset)
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
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    from loopline.tracking import client, point

    point(settings)
    c = client(settings)
    by_version: dict[str, list[DayCheck]] = {}
    for check in checks:
        if check.metrics:
            by_version.setdefault(check.model_version, []).append(check)
    for version, version_checks in by_version.items():
        batch: list[Metric] = []
        for check in version_checks:
            day = as_day(check.ds)
            ts = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
            batch.extend(Metric(k, v, ts, day.toordinal()) for k, v in check.metrics.items())
        run_id = monitoring_run(settings, version)
        try:
            _log_batch(c, run_id, batch)
        except MlflowException:  # the kept run was deleted (or purged): find or create the version's run again
            _log_batch(c, monitoring_run(settings, version, kept=False), batch)


def _log_batch(c: Any, run_id: str, batch: list[Any]) -> None:
    for start in range(0, len(batch), 900):  # MLflow accepts at most 1000 metrics per batch
        c.log_batch(run_id, metrics=batch[start:start + 900])


# The monitoring run of each model version, kept on the machine: every drift task is a new process, and finding the
# run took two MLflow calls (the experiment by name, a search by tag) before the one write.
MONITORING_RUN_FILES = 1024


def monitoring_run(settings: Settings, version: str, *, kept: bool = True) -> str:
    """The id of the MLflow run that holds ``version``'s drift metrics (in the experiment
    ``<experiment>-monitoring``, tagged ``loopline.monitored_version``), created on first use.

    ``kept``: use the id this machine found before (``LOOPLINE_HOME/cache/mlflow-monitoring-runs``), if any. A kept
    id can be stale only if someone deleted that run; the caller's write then fails and it asks again with
    ``kept=False``, which searches MLflow and keeps what it finds.
    """
    import mlflow

    from loopline.tracking import client

    folder = cache_dir(settings, "mlflow-monitoring-runs")
    key = hashlib.sha256("\n".join((settings.mlflow_tracking_uri, settings.experiment_name, settings.model_name,
                                     version)).encode()).hexdigest()[:40]
    path = folder / f"{key}.json"
    if kept:
        try:
            return str(json.loads(path.read_text(encoding="utf-8"))["run_id"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    c = client(settings)
    name = f"{settings.experiment_name}{MONITORING_EXPERIMENT_SUFFIX}"
    exp = c.get_experiment_by_name(name)
    exp_id = exp.experiment_id if exp is not None else c.create_experiment(name)
    runs = mlflow.search_runs(
        [exp_id], filter_string=f"tags.`loopline.monitored_version` = '{version}'", output_format="list",
        max_results=1,
    )
    run_id = str(runs[0].info.run_id if runs else c.create_run(
        exp_id, run_name=f"monitor {settings.model_name} v{version}",
        tags={"loopline.monitored_version": version, "loopline.model_name": settings.model_name},
    ).info.run_id)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = folder / f".tmp-{key}-{os.getpid()}"
    tmp.write_text(json.dumps({"run_id": run_id, "version": version, "model_name": settings.model_name}),
                   encoding="utf-8")
    os.replace(tmp, path)
    prune_oldest(folder, MONITORING_RUN_FILES, ".json")
    return run_id
