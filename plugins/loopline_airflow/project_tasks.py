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
from collections.abc import Iterable, Mapping
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


# -- which days a run works on -------------------------------------------------------------------------------
def partition_day(context: Context) -> dt.date | None:
    """The day of a partitioned run: its ``partition_key`` (``YYYY-MM-DD``), or None for a run without one."""
    run = context.get("dag_run")
    key = context.get("partition_key") or getattr(run, "partition_key", None)
    if not key:
        return None
    try:
        return dt.date.fromisoformat(str(key)[:10])
    except ValueError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"partition key {key!r} is not a day (YYYY-MM-DD)") from exc


def run_day(context: Context) -> dt.date:
    """The day a features run builds: ``params.ds`` when given, else the run's partition key."""
    ds = (context.get("params") or {}).get("ds")
    if ds:
        return dt.date.fromisoformat(str(ds))
    day = partition_day(context)
    if day is None:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException("this run has no partition key; trigger it with params {'ds': 'YYYY-MM-DD'}")
    return day


def days_for_run(context: Context) -> list[dt.date]:
    """Days a scoring (drift) run works on: ``params.start_ds``..``params.end_ds`` for a manual run, else the one
    day of its partition key (the upstream partition's key: ``IdentityMapper``); none without either."""
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
    day = partition_day(context)
    return [day] if day is not None else []


def _emit(context: Context, name: str, days: Iterable[str], extra: dict[str, Any]) -> None:
    """The outlet event of asset ``name``: one partition per day (a manual run over a range, a features run
    with ``params.ds``, emits the days it wrote, so the downstream DAGs still run once per day)."""
    accessor = _asset(context, name)
    accessor.extra = extra
    accessor.add_partitions(sorted(days))


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
    _emit(context, project_names(p).features_asset, [out["ds"]], {
        "ds": out["ds"], "uri": out["uri"], "rows": out["rows"], "content_hash": out["content_hash"],
        "feature_set_version": p.features.version})
    log.info("%s features of %s: %d rows written to %s", p.project, day, out["rows"], out["uri"])
    return out


# -- P.M.score ----------------------------------------------------------------------------------------------
def score_days(project_name: str, model: str, context: Context) -> dict[str, Any]:
    """Score the run's day (its partition key; or ``params.start_ds``..``end_ds``) with the champion, pinned
    for the run."""
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
    days = days_for_run(context)
    if not days:
        raise AirflowSkipException("no day to score: the run has no partition key and no params.start_ds")
    champion = resolve_alias(cfg, CHAMPION)
    if champion is None:
        raise AirflowSkipException(f"registered model {names.registered_model!r} has no @{CHAMPION} yet: nothing to "
                                   f"score ({len(days)} day(s) from {days[0]}; clear this run after the first "
                                   "promotion)")
    scored: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for day in days:
        if not store.exists(features, p.features.version, day):
            skipped[day.isoformat()] = "no features partition (the day was skipped or failed validation)"
            continue
        try:
            result = steps.score_model_day(p, model, store, settings, day, model_version=champion,
                                           extra=_run_extra(context))
        except UnsafeModelError as exc:  # a retry would refuse the same artifact again
            raise LooplineUnsafeModelError(str(exc)) from exc
        scored.append(result.as_dict())
    if not scored:
        raise AirflowSkipException(f"none of the {len(days)} day(s) could be scored: {skipped}")
    out = {"model_name": names.registered_model, "model_version": champion, "days": [s["ds"] for s in scored],
           "rows": sum(s["rows"] for s in scored), "skipped": skipped}
    _emit(context, names.predictions_asset, out["days"],
          {k: out[k] for k in ("model_name", "model_version", "days")})
    return out


# -- P.M.drift ----------------------------------------------------------------------------------------------
def monitor_days(project_name: str, model: str, context: Context) -> dict[str, Any]:
    """The run's day's drift check (its partition key; or ``params.start_ds``..``end_ds``) against the reference
    of the version that scored it; the trailing window is read from the store."""
    from airflow.sdk.exceptions import AirflowSkipException
    from loopline import steps
    from loopline.monitoring import log_drift_metrics
    from loopline.project import model_names

    p = project(project_name)
    names = model_names(p, model)
    settings = _settings()
    store = _store(settings)
    days = days_for_run(context)
    if not days:
        raise AirflowSkipException("no day to check: the run has no partition key and no params.start_ds")
    checks: list[Any] = []
    skipped: dict[str, str] = {}
    for day in days:
        outcome = steps.drift_model_day(p, model, store, settings, day, extra=_run_extra(context),
                                        window_on_disk=True)
        if outcome.skipped:
            skipped[day.isoformat()] = outcome.skipped
            continue
        checks.append(outcome)
    if not checks:
        raise AirflowSkipException(f"none of the {len(days)} day(s) could be checked: {skipped}")
    log_drift_metrics(steps.model_settings(settings, p, model), checks)
    reports = [c.summary for c in checks]
    drifted = [r["ds"] for r in reports if r["drifted"]]
    _emit(context, names.drift_reports_asset, [r["ds"] for r in reports],
          {"days": [r["ds"] for r in reports], "drifted_days": drifted})
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
