"""What the Loopline page shows, gathered through the core functions the DAGs use.

Per project and model: the registered model's champion (``Registry.champion``, the promotion history
``promotion.history`` and each promotion's recorded decision ``promotion.recorded_decision`` with both models'
metrics), the rejected candidates (their recorded decisions), and the newest drift reports of the model
(``reports.report_days`` / ``reports.read_drift_report``) summarised per day with each feature's PSI.

Nothing here raises for missing or broken data: a project file with an error, a model never registered, no
champion, no report, a corrupt report, an unreachable MLflow server or store each become a sentence in the
result, in the place where the data would have been.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.project.loader import Found
    from loopline.project.spec import Project
    from loopline.promotion import Registry
    from loopline.store import PartitionStore

log = logging.getLogger(__name__)

MAX_REPORT_DAYS = 366
"""Days of drift reports per model on the page (the newest): the charts draw them all."""
MAX_HEATMAP_DAYS = 60
"""Newest days of the heatmap (the charts cover every day read)."""
MAX_DECISIONS = 50
"""Newest champion changes and rejections per model whose recorded decision is read."""
DEFAULT_PSI_BANDS = (0.1, 0.2)
REGISTRY_TTL_SECONDS = 30.0
"""How long the registry part of the page (champion, decisions) and the reachability of MLflow are reused."""
REACHABLE_TIMEOUT_SECONDS = 3.0


@dataclass
class Sources:
    """Where the page reads from; the defaults are the DAGs' own (tests pass their own).

    ``projects`` lists the project files (``loopline.project.loader.discover``); ``store`` opens the partition
    store (``loopline_airflow.hooks.store.partition_store``); ``registry`` opens one registered model
    (``MLflowHook().registry``, with one attempt per call: a page does not wait out retries); ``tracking_uri``
    names the MLflow server, checked once per page so that an unreachable server costs seconds, not MLflow's
    retries times every model.
    """

    projects: Callable[[], list[Found]] = field(default_factory=lambda: _default_projects)
    store: Callable[[], PartitionStore] = field(default_factory=lambda: _default_store)
    registry: Callable[[str], Registry] = field(default_factory=lambda: _default_registry)
    tracking_uri: Callable[[], str] = field(default_factory=lambda: _default_tracking_uri)


def _default_projects() -> list[Found]:
    from loopline.project.loader import discover

    return discover()


def _default_store() -> PartitionStore:
    from loopline_airflow.hooks.store import partition_store

    return partition_store(check=False)


def _hook() -> Any:
    from loopline_airflow.hooks.mlflow import MLflowHook

    return MLflowHook(retry_attempts=1)


def _default_registry(name: str) -> Registry:
    registry: Registry = _hook().registry(name)
    return registry


def _default_tracking_uri() -> str:
    return str(_hook().get_tracking_uri())


# -- small helpers ----------------------------------------------------------------------------------------------
def finite(value: Any) -> float | None:
    """A JSON-safe number: None for anything that is not a finite float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _metrics(values: Any) -> dict[str, float | None]:
    return {str(k): finite(v) for k, v in values.items()} if isinstance(values, Mapping) else {}


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mlflow_unreachable(uri: str, timeout: float = REACHABLE_TIMEOUT_SECONDS) -> str | None:
    """None when the tracking server at ``uri`` answers (any HTTP status), else why not. A local
    (``sqlite:``, ``file:``) URI needs no server."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered (perhaps 401 behind basic auth): reachable
    except (OSError, ValueError) as exc:
        from loopline.redact import mask_url

        return f"MLflow at {mask_url(uri)} did not answer ({_short(exc, 160)})"


class TTLCache:
    """A small thread-safe LRU whose entries expire after ``ttl`` seconds (``None``: never; then the key must
    name the immutable thing cached, e.g. a report's file identity)."""

    def __init__(self, maxsize: int = 2048, ttl: float | None = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.maxsize, self.ttl, self._clock = maxsize, ttl, clock
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_set(self, key: Any, compute: Callable[[], Any]) -> Any:
        now = self._clock()
        with self._lock:
            hit = self._data.get(key)
            if hit is not None and hit[0] > now:
                self._data.move_to_end(key)
                return hit[1]
        value = compute()
        with self._lock:
            self._data[key] = (math.inf if self.ttl is None else now + self.ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


REPORT_CACHE = TTLCache(maxsize=20_000, ttl=None)
"""Parsed report summaries, keyed on the report file's identity (``reports.report_stamps``): a written report
never changes, and a rewritten one has another identity, so entries never expire (only the LRU bound)."""
REGISTRY_CACHE = TTLCache(maxsize=256, ttl=REGISTRY_TTL_SECONDS)
"""The registry part of a model (champion, timeline, rejections) and MLflow's reachability, briefly: an alias
moves at any time."""


# -- drift ------------------------------------------------------------------------------------------------------
def report_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """One day's drift report as the page needs it: the verdict, the reasons and each feature's PSI."""
    decision = report.get("decision") or {}
    config = report.get("config") or {}
    bands = config.get("psi_bands") if isinstance(config, Mapping) else None
    if not (isinstance(bands, list | tuple) and len(bands) == 2 and all(finite(b) is not None for b in bands)):
        bands = DEFAULT_PSI_BANDS
    features = report.get("features") or {}
    psi = {str(name): finite(f.get("psi")) for name, f in features.items() if isinstance(f, Mapping)}
    prediction_column = str(config.get("prediction_column") or "score") if isinstance(config, Mapping) else "score"
    prediction = decision.get("prediction_drift")
    prediction_psi = finite(prediction.get("psi")) if isinstance(prediction, Mapping) else psi.get(prediction_column)
    drift_share = finite(config.get("drift_share")) if isinstance(config, Mapping) else None
    return {
        "ds": str(report.get("ds")),
        "model_version": report.get("model_version"),
        "created_at": report.get("created_at"),
        "drifted": bool(decision.get("drifted")),
        "reasons": [str(r) for r in list(decision.get("reasons") or [])[:5]],
        "psi_bands": [float(bands[0]), float(bands[1])],
        "psi": psi,
        "skipped": sorted(str(k) for k in (report.get("skipped") or {})),
        "prediction_column": prediction_column,
        "prediction_psi": prediction_psi,
        "share_drifted": finite(decision.get("share_drifted")),
        "drift_share": drift_share,
        "performance": _performance(report),
        "error": None,
    }


def _performance(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The champion's labelled performance of a report: its ``performance`` block (written by the drift check
    since it records one), else the concept-drift verdict's numbers; None when the report has neither."""
    block = report.get("performance")
    if isinstance(block, Mapping):
        return {"metric": str(block.get("metric")), "value": finite(block.get("value")),
                "validation": finite(block.get("validation")), "rows": block.get("rows"),
                "higher_is_better": bool(block.get("higher_is_better", True)), "note": block.get("note")}
    decay = (report.get("decision") or {}).get("performance_decay")
    if isinstance(decay, Mapping):
        return {"metric": str(decay.get("metric")), "value": finite(decay.get("current")),
                "validation": finite(decay.get("reference")), "rows": None, "higher_is_better": None, "note": None}
    return None


def drift_days(store: PartitionStore, fsv: str, dataset: str, limit: int = MAX_REPORT_DAYS) -> dict[str, Any]:
    """The newest ``limit`` days of drift reports of one model, oldest first, each summarised or with its error.

    One listing gives every day and the identity of its ``report.json``; a summary is parsed once per identity
    and kept (a rewritten day has a new identity, so it is read again).
    """
    from loopline.reports import ReportError, read_drift_report, report_stamps

    stamps = report_stamps(store, fsv, dataset=dataset)
    days = list(stamps)
    out: list[dict[str, Any]] = []
    for day in days[-limit:]:
        stamp = stamps[day]
        if stamp is None:  # a folder without report.json: a write in progress or a removed report
            out.append({"ds": day.isoformat(), "error": "no report.json in this day's folder"})
            continue
        key = (store.root, dataset, fsv, day.isoformat(), stamp)

        def read(day: dt.date = day) -> dict[str, Any] | None:
            report = read_drift_report(store, fsv, day, dataset=dataset)
            return None if report is None else report_summary(report)

        try:
            summary = REPORT_CACHE.get_or_set(key, read)
        except (ReportError, UnicodeDecodeError) as exc:
            out.append({"ds": day.isoformat(), "error": f"corrupt report: {_short(exc)}"})
            continue
        except OSError as exc:
            out.append({"ds": day.isoformat(), "error": f"cannot read report: {_short(exc)}"})
            continue
        if summary is None:  # removed between the listing and the read
            out.append({"ds": day.isoformat(), "error": "no report.json in this day's folder"})
            continue
        out.append(summary)
    features: dict[str, float] = {}
    for day_summary in out[-MAX_HEATMAP_DAYS:]:
        for name, value in (day_summary.get("psi") or {}).items():
            features[name] = max(features.get(name, -1.0), value if value is not None else -1.0)
    return {
        "days": out,
        "total_days": len(days),
        "features": sorted(features, key=lambda n: (-features[n], n)),  # most drifted first
        "message": None if days else "no drift report yet (the drift DAG writes one per scored day)",
    }


# -- registry ---------------------------------------------------------------------------------------------------
def _decision(registry: Registry, version: str) -> dict[str, Any] | None:
    from loopline.promotion import recorded_decision

    return recorded_decision(registry, version)


def registry_view(registry: Registry) -> dict[str, Any]:
    """Champion, champion changes (newest first) and rejected candidates of one registered model."""
    from loopline.promotion import TAG_DECISION, TAG_DECISION_JSON, history, logged_metrics
    from loopline.tracking import TAG_TRIGGER

    champion = registry.champion()
    changes = list(reversed(history(registry)))
    versions = registry.call(f"list versions of {registry.name!r}", registry.client.search_model_versions,
                             f"name='{registry.name}'")
    # Each version's training run and what triggered it (cron, drift, manual): tags set when it was registered.
    origin = {str(mv.version): {"run_id": mv.run_id, "trigger": (mv.tags or {}).get(TAG_TRIGGER)}
              for mv in versions}
    timeline = []
    for entry in changes[:MAX_DECISIONS]:
        keys = ("action", "version", "previous", "reason", "metric", "dag_id", "dag_run_id")
        row: dict[str, Any] = {k: entry.get(k) for k in keys}
        row.update(origin.get(str(entry.get("version")), {"run_id": None, "trigger": None}))
        row["candidate"], row["champion"] = finite(entry.get("candidate")), finite(entry.get("champion"))
        row["window"] = entry.get("window") if isinstance(entry.get("window"), dict) else {}
        row["candidate_metrics"], row["champion_metrics"] = {}, {}
        if entry.get("action") == "promote" and entry.get("version"):
            record = _decision(registry, str(entry["version"])) or {}
            row["candidate_metrics"] = _metrics(record.get("candidate_metrics"))
            row["champion_metrics"] = _metrics(record.get("champion_metrics"))
            row["metrics_truncated"] = bool(record.get("metrics_truncated"))
        timeline.append(row)
    rejections = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        tags = mv.tags or {}
        if tags.get(TAG_DECISION) != "reject":
            continue
        try:
            record = json.loads(tags.get(TAG_DECISION_JSON) or "{}")
        except json.JSONDecodeError:
            record = {}
        record = record if isinstance(record, dict) else {}
        rejections.append({
            "version": str(mv.version), "reason": record.get("reason") or tags.get("loopline.decision_reason"),
            "metric": record.get("metric"), "champion_version": record.get("champion_version"),
            "candidate_metrics": _metrics(record.get("candidate_metrics")),
            "champion_metrics": _metrics(record.get("champion_metrics")),
            "registered_at": _ms(mv.creation_timestamp),
            "run_id": mv.run_id, "trigger": tags.get(TAG_TRIGGER),
        })
        if len(rejections) >= MAX_DECISIONS:
            break
    view: dict[str, Any] = {"champion": None, "timeline": timeline, "rejections": rejections, "message": None}
    if champion is None:
        view["message"] = "no champion yet: no candidate has passed the promotion gate"
        return view
    mv = registry.version(champion)
    since = next((e for e in changes if e.get("version") == champion), None)
    view["champion"] = {
        "version": champion, "run_id": mv.run_id, "trigger": (mv.tags or {}).get(TAG_TRIGGER),
        "registered_at": _ms(mv.creation_timestamp),
        "metrics": _metrics(logged_metrics(mv)),
        "since": None if since is None else {
            "action": since.get("action"), "window_end": (since.get("window") or {}).get("window_end"),
            "dag_id": since.get("dag_id"), "dag_run_id": since.get("dag_run_id"),
        },
    }
    return view


def _ms(value: Any) -> str | None:
    number = finite(value)
    return None if number is None else dt.datetime.fromtimestamp(number / 1000, dt.UTC).isoformat(timespec="seconds")


# -- the whole page ---------------------------------------------------------------------------------------------
def _registry_part(sources: Sources, name: str) -> dict[str, Any]:
    from loopline.promotion import UnknownModelError

    try:
        return registry_view(sources.registry(name))
    except UnknownModelError:
        return {"champion": None, "timeline": [], "rejections": [], "message": (
            f"registered model {name!r} does not exist yet: no training run has registered it (run the retrain DAG)")}
    except Exception as exc:  # the page says what failed instead of failing
        log.warning("Loopline page: registry of %s unreadable: %s", name, exc)
        return {"champion": None, "timeline": [], "rejections": [],
                "message": f"MLflow registry unreadable: {_short(exc)}"}


def model_view(project: Project, model: str, store: PartitionStore | None, store_error: str | None,
               sources: Sources, mlflow_error: str | None, tracking_uri: str = "") -> dict[str, Any]:
    """One model's part of the page; the registry part is reused for ``REGISTRY_TTL_SECONDS`` per tracking URI."""
    from loopline.project.names import STEPS, model_names

    from loopline_airflow.links import mlflow_ui_url

    names = model_names(project, model)
    out: dict[str, Any] = {
        "project": project.project, "model": model, "registered_model": names.registered_model,
        "dags": {step: names.dag(step) for step in STEPS},
        "mlflow_ui": mlflow_ui_url(tracking_uri),  # links to runs and versions (None: no MLflow UI to link to)
    }
    if mlflow_error:
        out["registry"] = {"champion": None, "timeline": [], "rejections": [], "message": mlflow_error}
    else:
        out["registry"] = REGISTRY_CACHE.get_or_set(
            ("registry", tracking_uri, names.registered_model),
            lambda: _registry_part(sources, names.registered_model))
    if store is None:
        out["drift"] = {"days": [], "total_days": 0, "features": [], "message": store_error}
    else:
        try:
            out["drift"] = drift_days(store, str(project.features.version), names.drift_dataset)
        except Exception as exc:
            log.warning("Loopline page: drift reports of %s unreadable: %s", names.drift_dataset, exc)
            out["drift"] = {"days": [], "total_days": 0, "features": [],
                            "message": f"drift reports unreadable: {_short(exc)}"}
    return out


MAX_MISSING_DAYS = 60  # days listed by name; the count covers them all


def missing_days(store: PartitionStore, project: Project) -> dict[str, Any]:
    """The days between a project's first and last featured (or failed) day that have no features partition,
    newest first, each with why: its features failed validation (a result is stored: the page links it) or
    it was never built. Such a day's scoring and drift runs never start, so this is where the UI shows it."""
    from loopline.project.names import project_names
    from loopline.validation import VALIDATION_KIND

    dataset, fsv = project_names(project).features_dataset, str(project.features.version)
    featured = set(store.days(dataset, fsv))
    failed = set(store.side_days(VALIDATION_KIND, dataset, fsv)) - featured
    known = featured | failed
    if not known:
        return {"first": None, "last": None, "total": 0, "days": []}
    first, last = min(known), max(known)
    gaps = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    gaps = [d for d in reversed(gaps) if d not in featured]
    return {"first": first.isoformat(), "last": last.isoformat(), "total": len(gaps),
            "days": [{"ds": d.isoformat(), "why": "failed validation" if d in failed else "not built"}
                     for d in gaps[:MAX_MISSING_DAYS]]}


def overview(sources: Sources) -> dict[str, Any]:
    """Every project and model on the search path, as the page and ``/api/models`` show them."""
    try:
        found = sources.projects()
    except Exception as exc:
        return {"projects": [], "message": f"projects could not be listed: {_short(exc)}"}
    store: PartitionStore | None = None
    store_error = None
    try:
        store = sources.store()
    except Exception as exc:
        store_error = f"store unreadable: {_short(exc)}"
    tracking_uri = ""
    try:
        tracking_uri = sources.tracking_uri()
        mlflow_error = REGISTRY_CACHE.get_or_set(("reachable", tracking_uri), lambda: mlflow_unreachable(tracking_uri))
    except Exception as exc:
        mlflow_error = f"MLflow connection unusable: {_short(exc)}"
    projects: list[dict[str, Any]] = []
    for f in found:
        if f.project is None:
            projects.append({"project": f.path.parent.name, "path": str(f.path), "models": [],
                             "error": str(f.error)})
            continue
        models = [model_view(f.project, m, store, store_error, sources, mlflow_error, tracking_uri)
                  for m in f.project.models]
        missing: dict[str, Any] = {"message": store_error}
        if store is not None:
            try:
                missing = missing_days(store, f.project)
            except Exception as exc:
                log.warning("Loopline page: days of %s unreadable: %s", f.project.project, exc)
                missing = {"message": f"features days unreadable: {_short(exc)}"}
        projects.append({"project": f.project.project, "path": str(f.path), "models": models, "error": None,
                         "missing_days": missing})
    return {"projects": projects,
            "message": None if projects else "no project found (include/projects/ and LOOPLINE_PROJECTS_PATH)"}
