"""Task bodies of the DAGs generated from model projects: Airflow context in, :mod:`loopline.steps` calls out.

Every body takes the project (and model) by name, loads the validated project once per process, and calls the
same step function ``loopline run`` calls. It turns core outcomes into Airflow semantics: a day without data
is skipped, what a retry cannot fix (a day that does not fit the project file, a failed suite, an unsafe
model) fails at once, and the return value is small JSON for XCom. Heavy modules are imported inside.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context
    from loopline.project import Project
    from loopline.settings import Settings
    from loopline.store import PartitionStore

log = logging.getLogger(__name__)


@functools.cache
def project(name: str) -> Project:
    """The project, loaded and validated once per process."""
    from loopline.project import load_project

    return load_project(name)


def _settings() -> Settings:
    from loopline.settings import Settings

    return Settings.from_env()


def _store(settings: Settings) -> PartitionStore:
    from loopline_airflow.hooks.store import partition_store

    return partition_store(settings)


def _asset(context: Context, name: str) -> Any:
    """The outlet event accessor of the asset called ``name`` (the factory declares outlets the same way)."""
    from airflow.sdk import Asset

    return context["outlet_events"][Asset(name=name, group="loopline")]


def _fail(exc: Exception) -> Exception:
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


# -- which days a run works on, and how a caught-up day may fail ---------------------------------------------
def run_day(context: Context) -> dt.date:
    """The day a run works on: ``params.ds`` when given, else the start of its data interval."""
    ds = (context.get("params") or {}).get("ds")
    if ds:
        return dt.date.fromisoformat(str(ds))
    start = context.get("data_interval_start")
    if start is None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("this run has no data interval; trigger it with params {'ds': 'YYYY-MM-DD'}")
    return dt.date(start.year, start.month, start.day)


def days_from_events(events: Iterable[Any]) -> list[dt.date]:
    """Days named in asset events' extras (``ds`` or ``days``), sorted and unique."""
    out: set[dt.date] = set()
    for event in events:
        extra = getattr(event, "extra", None) or {}
        if extra.get("ds"):
            out.add(dt.date.fromisoformat(str(extra["ds"])))
        for d in extra.get("days") or []:
            out.add(dt.date.fromisoformat(str(d)))
    return sorted(out)


def days_for_run(context: Context, upstream: Any) -> list[dt.date]:
    """Days to process: ``params.start_ds``..``params.end_ds`` for a manual run, else the triggering events."""
    params = context.get("params") or {}
    if params.get("start_ds"):
        from airflow.sdk.exceptions import AirflowFailException
        from loopline.settings import SettingsError, check_manual_range

        start = dt.date.fromisoformat(str(params["start_ds"]))
        end = dt.date.fromisoformat(str(params.get("end_ds") or params["start_ds"]))
        try:  # a manual run over years of days is a mistake a retry cannot fix
            check_manual_range(start, end, _settings())
        except SettingsError as exc:
            raise AirflowFailException(str(exc)) from exc
        return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    events = (context.get("triggering_asset_events") or {}).get(upstream, [])
    return days_from_events(events)


def missed_for_run(context: Context, days: list[dt.date], settings: Settings,
                   have: Callable[[], Iterable[dt.date]], done: Callable[[], Iterable[dt.date]]) -> list[dt.date]:
    """Days an asset-triggered run catches up on: input but no output within ``catch_up_days`` before its
    newest day (``loopline.store.missed_days``); none for a manual run, which names its days."""
    if (context.get("params") or {}).get("start_ds") or not days or settings.catch_up_days == 0:
        return []
    from loopline.store import missed_days

    missed = [d for d in missed_days(have(), done(), max(days), settings.catch_up_days) if d not in days]
    if missed:
        log.warning("catching up on %d day(s) no event brought to this DAG: %s", len(missed),
                    [d.isoformat() for d in missed])
    return missed


def run_one_day(step: Callable[[], Any], day: dt.date, missed: list[dt.date], skipped: dict[str, str],
                what: str) -> Any:
    """``step()`` for one day. A failure of one of the run's own days fails the run; a failure of a caught-up
    day (in ``missed``) is recorded in ``skipped`` and logged, and None is returned: it never fails the days
    the run was started for."""
    try:
        return step()
    except Exception as exc:
        if day not in missed:
            raise
        skipped[day.isoformat()] = f"catch-up failed: {exc}"
        log.warning("%s %s (catch-up) failed: %s", what, day, exc)
        return None


def _readers(p: Project) -> dict[str, Any]:
    """Readers of the source kinds that need an Airflow connection (``bigquery``), when the project has one."""
    if not any(source.kind == "bigquery" for source in p.sources.values()):
        return {}
    from loopline_airflow.sources import BigQueryReader

    return {"bigquery": BigQueryReader()}


def _run_extra(context: Context) -> dict[str, Any]:
    """What a partition's manifest records of the task that wrote it."""
    ti = context.get("ti")
    return {"dag_id": getattr(ti, "dag_id", None), "run_id": getattr(ti, "run_id", None),
            "try_number": getattr(ti, "try_number", None)}


# -- P.features ---------------------------------------------------------------------------------------------
def build_features(project_name: str, context: Context) -> dict[str, Any]:
    """Build, validate and write the run's day (``params.ds`` or its data interval); skip a day without rows."""
    from airflow.sdk.exceptions import AirflowSkipException
    from loopline import steps
    from loopline.project import project_names

    from loopline_airflow.sources import BigQuerySourceError

    p = project(project_name)
    settings = _settings()
    store = _store(settings)
    day = run_day(context)
    try:
        result = steps.features_day(p, store, day, extra=_run_extra(context), readers=_readers(p))
    except (steps.ProjectDataError, BigQuerySourceError) as exc:  # a retry reads the same data, or the same file
        raise _fail(exc) from exc
    if result.status == "empty":
        raise AirflowSkipException(f"project {p.project!r}: no rows on {day}; nothing to build (skipped, not failed)")
    out = result.as_dict()
    _asset(context, project_names(p).features_asset).extra = {
        "ds": out["ds"], "uri": out["uri"], "rows": out["rows"], "content_hash": out["content_hash"],
        "feature_set_version": p.features.version}
    log.info("%s features of %s: %d rows written to %s", p.project, day, out["rows"], out["uri"])
    return out


# -- P.M.score ----------------------------------------------------------------------------------------------
def score_days(project_name: str, model: str, context: Context) -> dict[str, Any]:
    """Score each triggering day (or ``params.start_ds``..``end_ds``) with the champion, pinned for the run."""
    from airflow.sdk.exceptions import AirflowSkipException
    from loopline import steps
    from loopline.project import model_names, project_names
    from loopline.tracking import CHAMPION, UnsafeModelError, resolve_alias

    from loopline_airflow.exceptions import LooplineUnsafeModelError

    p = project(project_name)
    names = model_names(p, model)
    settings = _settings()
    cfg = steps.model_settings(settings, p, model)
    store = _store(settings)
    features = project_names(p).features_dataset
    fsv = p.features.version
    days = days_for_run(context, _by_name(project_names(p).features_asset))
    if not days:
        raise AirflowSkipException("no days to score: no triggering feature events and no params.start_ds")
    champion = resolve_alias(cfg, CHAMPION)
    if champion is None:
        raise AirflowSkipException(f"registered model {names.registered_model!r} has no @{CHAMPION} yet: nothing to "
                                   f"score ({len(days)} day(s) from {days[0]} wait for the first promotion)")
    missed = missed_for_run(context, days, settings, lambda: store.days(features, fsv),
                            lambda: store.days(names.predictions_dataset, fsv))
    scored: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for day in sorted([*days, *missed]):
        if not store.exists(features, fsv, day):
            skipped[day.isoformat()] = "no features partition (the day was skipped or failed validation)"
            continue
        step = partial(steps.score_model_day, p, model, store, settings, day, model_version=champion)
        try:
            result = run_one_day(step, day, missed, skipped, "scoring")
        except UnsafeModelError as exc:  # a retry would refuse the same artifact again
            raise LooplineUnsafeModelError(str(exc)) from exc
        if result is not None:
            scored.append(result.as_dict())
    if not scored:
        raise AirflowSkipException(f"none of the {len(days)} day(s) could be scored: {skipped}")
    out = {"model_name": names.registered_model, "model_version": champion, "days": [s["ds"] for s in scored],
           "rows": sum(s["rows"] for s in scored), "skipped": skipped}
    _asset(context, names.predictions_asset).extra = {k: out[k] for k in ("model_name", "model_version", "days")}
    return out


def _by_name(name: str) -> Any:
    from airflow.sdk import Asset

    return Asset(name=name, group="loopline")


# -- P.M.drift ----------------------------------------------------------------------------------------------
def monitor_days(project_name: str, model: str, context: Context) -> dict[str, Any]:
    """Each triggering day's drift check against the reference of the version that scored it."""
    from airflow.sdk.exceptions import AirflowSkipException
    from loopline import steps
    from loopline.monitoring import log_drift_metrics
    from loopline.project import model_names
    from loopline.reports import report_days

    p = project(project_name)
    names = model_names(p, model)
    settings = _settings()
    store = _store(settings)
    fsv = p.features.version
    days = days_for_run(context, _by_name(names.predictions_asset))
    if not days:
        raise AirflowSkipException("no days to check: no triggering prediction events and no params.start_ds")
    missed = missed_for_run(context, days, settings, lambda: store.days(names.predictions_dataset, fsv),
                            lambda: report_days(store, fsv, dataset=names.drift_dataset))
    checks: list[Any] = []
    skipped: dict[str, str] = {}
    for day in sorted([*days, *missed]):
        outcome = run_one_day(partial(steps.drift_model_day, p, model, store, settings, day), day, missed, skipped,
                              "drift check")
        if outcome is None:
            continue
        if outcome.skipped:
            skipped[day.isoformat()] = outcome.skipped
            continue
        checks.append(outcome)
    if not checks:
        raise AirflowSkipException(f"none of the {len(days)} day(s) could be checked: {skipped}")
    log_drift_metrics(steps.model_settings(settings, p, model), checks)
    reports = [c.summary for c in checks]
    drifted = [r["ds"] for r in reports if r["drifted"]]
    _asset(context, names.drift_reports_asset).extra = {"days": [r["ds"] for r in reports], "drifted_days": drifted}
    return {"reports": reports, "drifted_days": drifted, "skipped": skipped}


# -- P.M.retrain --------------------------------------------------------------------------------------------
def plan_retrain(project_name: str, model: str, context: Context) -> dict[str, Any]:
    """Why and on which window this run retrains, or skip (cooldown, stale drift event)."""
    from airflow.sdk.exceptions import AirflowSkipException
    from loopline import steps
    from loopline.project import model_names, project_names
    from loopline.retraining import RetrainRequest, plan

    p = project(project_name)
    spec = p.models[model]
    settings = _settings()
    params = dict(context.get("params") or {})
    run = context.get("dag_run")
    run_type = str(getattr(getattr(run, "run_type", None), "value", getattr(run, "run_type", "")))
    drift_name = model_names(p, model).drift_asset
    payloads = [dict((dict(getattr(e, "extra", None) or {})).get("payload") or getattr(e, "extra", None) or {})
                for asset, evs in (context.get("triggering_asset_events") or {}).items()
                if getattr(asset, "name", None) == drift_name for e in evs]
    logical = context.get("logical_date")
    request = RetrainRequest(
        run_type=run_type, drift_events=payloads, as_of=params.get("as_of") or None,
        logical_date=logical.date() if logical is not None else None,
        window_days=int(params.get("window_days") or spec.training.window_days),
        validation_days=int(params.get("validation_days") or spec.training.validation_days),
        cooldown_days=int(params["cooldown_days"] if params.get("cooldown_days") is not None
                          else spec.drift.cooldown_days),
        force=bool(params.get("force")), hyperparameters=dict(params.get("hyperparameters") or {}),
    )
    decision = plan(request, steps.model_settings(settings, p, model), _store(settings),
                    features_dataset=project_names(p).features_dataset)
    if decision.skip:
        raise AirflowSkipException(decision.skip)
    return decision.as_dict()


def validate_training_window(project_name: str, model: str, plan: Mapping[str, Any]) -> dict[str, Any]:
    """The project's generated suite on every day of the window (fails: nothing is trained)."""
    from loopline import steps
    from loopline.project import project_names
    from loopline.training import TrainingWindow, load_window_of

    p = project(project_name)
    settings = _settings()
    store = _store(settings)
    window = TrainingWindow.ending(plan["as_of"], plan["window_days"], plan["validation_days"])
    frame = load_window_of(store, project_names(p).features_dataset, p.features.version, window)
    try:
        steps.validate_features(p, store, frame, window.end)
    except steps.FeatureValidationError as exc:
        raise _fail(exc) from exc
    return {"success": True, "rows": len(frame), "window": window.as_dict(), "model": model}


def train_challenger(project_name: str, model: str, plan: Mapping[str, Any], context: Context) -> dict[str, Any]:
    """Train on the planned window, log to MLflow with lineage, register, and alias it ``challenger``."""
    from loopline import steps
    from loopline.tracking import CHALLENGER, client, tracking_server_errors
    from loopline.training import TrainingDataError

    p = project(project_name)
    settings = _settings()
    cfg = steps.model_settings(settings, p, model)
    ti = context.get("ti")
    lineage = {"trigger": plan["trigger"], "dag_id": getattr(ti, "dag_id", ""),
               "dag_run_id": getattr(ti, "run_id", ""), "trigger_detail": plan.get("reason", "")}
    if plan.get("drift"):
        lineage["drift_ds"] = plan["drift"].get("ds", "")
        lineage["drift_report"] = plan["drift"].get("uri", "")
    with tracking_server_errors(cfg, "training the challenger", "Nothing was promoted: the champion is unchanged."):
        try:
            registered = steps.train_model(
                p, model, _store(settings), settings, plan["as_of"], context=lineage,
                params=plan.get("hyperparameters") or None, window_days=plan["window_days"],
                validation_days=plan["validation_days"])
        except (TrainingDataError, ValueError) as exc:  # one class, too few rows, unknown hyperparameters
            raise _fail(exc) from exc
        client(cfg).set_registered_model_alias(cfg.model_name, CHALLENGER, registered.version)
    return {**registered.as_dict(), "as_of": plan["as_of"], "trigger": plan["trigger"]}
