"""The loop's steps for a declared project: one function per step, shared by ``loopline run`` and Airflow.

Each step works on one day (or one window ending on a day) of one project (and model), reads its inputs from
the store, writes its output as a transaction and returns a small JSON-able result. Names of datasets,
experiments and registered models come from :mod:`loopline.project.names`; model behaviour comes from the
project file; where things live (store root, MLflow URI) comes from :class:`~loopline.settings.Settings`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from loopline.project.loader import resolve
from loopline.project.names import model_names, project_names
from loopline.project.spec import Project
from loopline.settings import Settings
from loopline.store import PartitionNotFoundError, PartitionStore, as_day

if TYPE_CHECKING:
    import pandas as pd

    from loopline.monitoring import DayCheck, Monitored
    from loopline.scoring import Scored
    from loopline.tracking import RegisteredModel
    from loopline.training import ModelInputs

log = logging.getLogger(__name__)
DS = "ds"
# Reads one source of a project for one day (None or an empty frame: no rows). Sources that need an Airflow
# connection (``bigquery``) are read by the reader the Airflow task bodies pass, by kind, in ``readers``.
Reader = Callable[[Project, str, dt.date], "pd.DataFrame | None"]


class NoChampionError(LookupError):
    """The registered model has no ``champion`` alias yet: nothing can be scored."""


@dataclass(frozen=True)
class DayResult:
    """Outcome of a day's step (the XCom value)."""

    ds: str
    dataset: str
    status: Literal["written", "empty"]
    uri: str
    rows: int
    content_hash: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_for(settings: Settings, *, fs: Any = None, access: str = "", check: bool = True) -> PartitionStore:
    """The partition store at ``settings.store_root``.

    Outside Airflow the filesystem comes from fsspec with ``settings.storage_options()`` (and the standard
    ``AWS_*`` / ``GOOGLE_APPLICATION_CREDENTIALS`` environment that s3fs and gcsfs read); inside Airflow the
    caller passes the filesystem Airflow built from a connection (``loopline_airflow.hooks.store``) and says so
    in ``access``. With ``check`` an object-store root whose bucket is missing or whose credentials are refused
    fails here with :class:`~loopline.store.StoreAccessError`, before any work is done.
    """
    store = PartitionStore(settings.store_root, settings.storage_options(), fs=fs, access=access)
    return store.check() if check else store


class ProjectDataError(ValueError):
    """A day's data does not fit the project file; the message names the project, the day and the column."""


class FeatureValidationError(ProjectDataError):
    """A day's features failed the project's Great Expectations suite; nothing was written for that day."""

    def __init__(self, message: str, summary: Any) -> None:
        super().__init__(message)
        self.summary = summary


# -- what each step needs to know, derived from the project ----------------------------------------------------
def model_settings(settings: Settings, project: Project, model: str) -> Settings:
    """The platform settings with this model's experiment, registered model and windows filled in."""
    spec, names = project.models[model], model_names(project, model)
    return dataclasses.replace(
        settings, experiment_name=project_names(project).experiment, model_name=names.registered_model,
        feature_set_version=project.features.version, seed=spec.training.seed,
        train_window_days=spec.training.window_days, validation_days=spec.training.validation_days,
        drift_window_days=spec.drift.window_days, drift_share=spec.drift.drifted_share,
        retrain_cooldown_days=spec.drift.cooldown_days,
    )


def model_inputs(project: Project, model: str, params: Mapping[str, Any] | None = None) -> ModelInputs:
    from loopline.training import ModelInputs

    spec = project.models[model]
    columns = project.model_features(model)
    factory = resolve(project, f"models.{model}.estimator.factory") if spec.estimator.factory else None
    return ModelInputs(
        columns=columns, categorical=[c for c in columns if project.features.column(c).kind == "categorical"],
        task=spec.task, label=spec.label.column, positive=spec.label.positive,
        params={**spec.estimator.params, **(params or {})}, factory=factory, seed=spec.training.seed,
        min_rows=spec.training.min_rows, metrics=tuple(spec.logged_metrics), sort_by=(*project.features.keys, DS),
        where=f"project {project.project!r}, model {model!r}: ",
    )


def scored_spec(project: Project, model: str) -> Scored:
    from loopline.scoring import Scored

    columns = project.model_features(model)
    names = model_names(project, model)
    return Scored(tuple(columns), tuple(c for c in columns if project.features.column(c).kind == "categorical"),
                  (*project.features.keys, DS), project.models[model].task,
                  project_names(project).features_dataset, names.predictions_dataset)


def monitored_spec(project: Project, model: str) -> Monitored:
    from loopline.monitoring import Monitored

    spec, names = project.models[model], model_names(project, model)
    return Monitored(project_names(project).features_dataset, names.predictions_dataset, names.drift_dataset,
                     project.features.version, tuple(project.model_features(model)), tuple(project.features.keys),
                     spec.label.column, spec.label.positive, spec.task, spec.drift.window_days,
                     names.registered_model, metric=spec.gate_metric)


def drift_config(project: Project, model: str) -> Any:
    from loopline.drift import DriftConfig

    spec = project.models[model]
    # The gate metric under the task types' name: the reference profile stores the validation metrics so.
    return DriftConfig(psi_bands=spec.drift.psi_bands, drift_share=spec.drift.drifted_share,
                       key_features={name: 1.0 for name in spec.drift.key_features} or None,
                       performance_metric=spec.gate_metric)


# -- sources ---------------------------------------------------------------------------------------------------
def read_source(project: Project, name: str, day: dt.date, *, store: PartitionStore | None = None,
                storage_options: Mapping[str, Any] | None = None,
                readers: Mapping[str, Reader] | None = None) -> pd.DataFrame:
    """One source's rows of ``day`` (plus its ``lookback_days`` before it); a missing day reads as no rows.

    With ``day_column`` set, a row of another day is an error naming the project, the day and the column.
    ``readers`` reads the sources of the kinds it names (inside Airflow: ``bigquery`` through the provider).
    """
    import pandas as pd

    source = project.sources[name]
    frames = []
    for back in range(source.lookback_days, -1, -1):
        d = day - dt.timedelta(days=back)
        frame = _read_one(project, name, d, store, storage_options, readers or {})
        if frame is not None:
            if source.day_column and len(frame):
                _check_day_column(project, name, frame, source.day_column, d)
            frames.append(frame)
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _read_one(project: Project, name: str, day: dt.date, store: PartitionStore | None,
              storage_options: Mapping[str, Any] | None, readers: Mapping[str, Reader]) -> pd.DataFrame | None:
    import pandas as pd

    source = project.sources[name]
    where = f"project {project.project!r}, source {name!r}, day {day}"
    if source.kind in readers:
        return readers[source.kind](project, name, day)
    if source.kind == "files":
        assert source.uri is not None
        uri = source.uri.format(ds=day.isoformat())
        if "://" not in uri and project.folder is not None:
            uri = str(project.folder / uri)
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
        if not fs.exists(path):
            return None
        try:
            with fs.open(path, "rb") as fh:
                return pd.read_csv(fh) if source.file_format == "csv" else pd.read_parquet(fh)
        except Exception as exc:
            raise ProjectDataError(f"{where}: {uri} cannot be read as {source.file_format}: {exc}") from exc
    if source.kind == "python":
        func = resolve(project, f"sources.{name}.function")
        frame = func(day)
        if frame is None:
            return None
        if not isinstance(frame, pd.DataFrame):
            raise ProjectDataError(f"{where}: {source.function} returned {type(frame).__name__}, not a DataFrame")
        return frame
    if source.kind == "store":
        if store is None:
            raise ProjectDataError(f"{where}: a store source needs the store")
        dataset = source.dataset or project_names(project).raw_dataset(name)
        try:
            return store.read(dataset, "1", day)
        except PartitionNotFoundError:
            return None
    raise ProjectDataError(f"{where}: {source.kind} sources are read inside Airflow (through the provider's hook); "
                           "`loopline run` reads files, python and store sources")


def _check_day_column(project: Project, name: str, frame: pd.DataFrame, column: str, day: dt.date) -> None:
    import pandas as pd

    where = f"project {project.project!r}, source {name!r}, day {day}"
    if column not in frame.columns:
        raise ProjectDataError(f"{where}: day_column {column!r} is missing (columns: {list(frame.columns)[:20]})")
    values = pd.to_datetime(frame[column], errors="coerce", utc=False)
    try:
        days = values.dt.date
    except AttributeError:
        days = pd.Series([None] * len(frame))
    wrong = (days != day) | values.isna()
    if wrong.any():
        example = frame.loc[wrong, column].iloc[0]
        raise ProjectDataError(f"{where}: column {column!r}: {int(wrong.sum())} of {len(frame)} row(s) are not of "
                               f"{day}, e.g. {example!r}; nothing was written for that day")


def read_tables(project: Project, day: dt.date, *, store: PartitionStore | None = None,
                storage_options: Mapping[str, Any] | None = None,
                readers: Mapping[str, Reader] | None = None) -> dict[str, pd.DataFrame]:
    """Every source's rows of ``day``, by source name."""
    return {name: read_source(project, name, day, store=store, storage_options=storage_options, readers=readers)
            for name in project.sources}


# -- features --------------------------------------------------------------------------------------------------
def build_features(project: Project, tables: Mapping[str, pd.DataFrame], day: dt.date) -> pd.DataFrame:
    """The day's features frame: keys, ``ds``, the feature columns with their declared dtypes, then the labels.

    With ``features.build`` the project's function makes the frame from the day's tables; without it the columns
    are taken as they are from the only source. Rows are sorted by the keys, so a day's content hash is stable.
    An empty day gives an empty frame. A declared column the data lacks is a :class:`ProjectDataError` naming
    the project, the day and the column; so is any exception the project's ``features.build`` raises (chained,
    naming the builder, the exception and the project file).
    """
    import pandas as pd

    where = f"project {project.project!r}, day {day}"
    if project.features.build:
        build = resolve(project, "features.build")
        try:
            frame = build(dict(tables), day)
        except ProjectDataError:
            raise
        except Exception as exc:
            raise ProjectDataError(f"{where}: features.build {project.features.build} raised {type(exc).__name__}: "
                                   f"{exc} (project file {project.path or project.project}); nothing was written "
                                   f"for that day") from exc
        if not isinstance(frame, pd.DataFrame):
            raise ProjectDataError(f"{where}: features.build {project.features.build} returned "
                                   f"{type(frame).__name__}, not a DataFrame")
    else:
        frame = next(iter(tables.values()))
    if frame.empty and len(frame.columns) == 0:
        return empty_features(project)
    labels = project.label_columns()
    wanted = [*project.features.keys, *(c.name for c in project.features.columns), *labels]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        what = ("key" if missing[0] in project.features.keys else
                "label column" if missing[0] in labels else "feature column")
        raise ProjectDataError(f"{where}: {what} {missing[0]!r} is missing from the day's data (columns present: "
                               f"{sorted(map(str, frame.columns))[:30]}); nothing was written for that day")
    out = frame[wanted].copy()
    out.insert(len(project.features.keys), DS, day.isoformat())
    for col in project.features.columns:
        out[col.name] = _coerce(out[col.name], col.resolved_dtype, col.kind, f"{where}: column {col.name!r}")
    out[DS] = out[DS].astype("string")
    for key in project.features.keys:
        if out[key].dtype == object:
            out[key] = out[key].astype("string")
    for label in labels:
        if out[label].dtype == object:
            out[label] = out[label].astype("string")
    return out.sort_values([*project.features.keys], kind="stable").reset_index(drop=True)


def _coerce(values: pd.Series, dtype: str, kind: str, where: str) -> pd.Series:
    import pandas as pd

    if kind == "numeric":
        if values.dtype == bool or str(values.dtype) == "boolean":
            values = values.astype("float64")
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna() & values.notna()
        if bad.any():
            raise ProjectDataError(f"{where}: {int(bad.sum())} value(s) are not numbers, e.g. "
                                   f"{values[bad].iloc[0]!r} (declared numeric)")
        if dtype in ("int64", "int32") and numeric.isna().any():
            dtype = "Int64"
        return numeric.astype(dtype)
    if dtype in ("string", "category"):
        text = values.astype("string")
        return text.astype("category") if dtype == "category" else text
    return values.astype(dtype)


def empty_features(project: Project) -> pd.DataFrame:
    import pandas as pd

    cols: dict[str, Any] = {k: pd.Series(dtype="string") for k in project.features.keys}
    cols[DS] = pd.Series(dtype="string")
    cols.update({c.name: pd.Series(dtype=c.resolved_dtype) for c in project.features.columns})
    cols.update({label: pd.Series(dtype="string") for label in project.label_columns()})
    return pd.DataFrame(cols)


_FINITE = (-1.7e308, 1.7e308)  # a declared bound left open still refuses ±inf


def _between(column: str, bounds: tuple[float | None, float | None] | None) -> dict[str, Any]:
    """Values within the declared ``[min, max]`` (either may be null), and finite in any case."""
    low, high = bounds if bounds is not None else (None, None)
    return {"type": "expect_column_values_to_be_between", "kwargs": {
        "column": column, "min_value": _FINITE[0] if low is None else low,
        "max_value": _FINITE[1] if high is None else high}}


def _in_set(column: str, values: Sequence[Any]) -> dict[str, Any]:
    return {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": column, "value_set": list(values)}}


def features_suite(project: Project) -> dict[str, Any]:
    """The Great Expectations suite generated from the declared features: presence, keys, kinds and the optional
    ``range`` / ``values`` / ``max_missing``; numeric features and regression labels must be finite."""
    exps: list[dict[str, Any]] = [{"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}}]
    keys = project.features.keys
    for key in [*keys, DS]:
        exps.append({"type": "expect_column_values_to_not_be_null", "kwargs": {"column": key}})
    if len(keys) == 1:
        exps.append({"type": "expect_column_values_to_be_unique", "kwargs": {"column": keys[0]}})
    else:
        exps.append({"type": "expect_compound_columns_to_be_unique", "kwargs": {"column_list": list(keys)}})
    for col in project.features.columns:
        # A column's value expectations fail on a missing column too; presence alone is checked for a column
        # that has none (each expectation costs GX a few milliseconds a day, whatever the day's size).
        checks = [_between(col.name, col.range)] if col.kind == "numeric" else []
        if col.values is not None:
            checks.append(_in_set(col.name, col.values))
        if col.max_missing is not None and col.max_missing < 1:
            checks.append({"type": "expect_column_values_to_not_be_null",
                           "kwargs": {"column": col.name, "mostly": round(1.0 - col.max_missing, 12)}})
        exps.extend(checks or [{"type": "expect_column_to_exist", "kwargs": {"column": col.name}}])
    for model in project.models.values():
        if model.task == "regression":
            exps.append(_between(model.label.column, model.label.range))
        elif model.label.values is not None:
            exps.append(_in_set(model.label.column, model.label.values))
    return {"name": f"{project.project}_features_v{project.features.version}",
            "meta": {"generated_from": str(project.path or project.project)}, "expectations": exps}


def features_day(project: Project, store: PartitionStore, day: str | dt.date, *, validate: bool = True,
                 tables: Mapping[str, pd.DataFrame] | None = None,
                 storage_options: Mapping[str, Any] | None = None, readers: Mapping[str, Reader] | None = None,
                 extra: Mapping[str, Any] | None = None) -> DayResult:
    """Build, validate and write one day's features partition (``<P>/features/v=<version>/ds=<day>``).

    ``extra`` goes into the partition's manifest (the Airflow task records its DAG run and try there).

    A day without rows writes nothing (``status="empty"``). A day that fails validation writes only its GX
    report (beside the partition) and raises :class:`FeatureValidationError`; its previous partition, other days
    and other projects are untouched.
    """
    d = as_day(day)
    dataset, version = project_names(project).features_dataset, project.features.version
    data = dict(tables) if tables is not None else read_tables(project, d, store=store,
                                                               storage_options=storage_options, readers=readers)
    frame = build_features(project, data, d)
    uri = store.uri(dataset, version, d)
    if frame.empty:
        return DayResult(d.isoformat(), dataset, "empty", uri, 0, reason=f"no rows on {d}")
    if validate:
        validate_features(project, store, frame, d)
    manifest = store.write(dataset, version, d, frame, extra=dict(extra) if extra else None)
    return DayResult(d.isoformat(), dataset, "written", uri, manifest.rows, manifest.content_hash)


def validate_features(project: Project, store: PartitionStore, frame: pd.DataFrame, day: dt.date) -> None:
    """The generated suite and the project's own suites; on failure the full result is written beside the
    partition and :class:`FeatureValidationError` names the project, the day, the columns and the report."""
    from loopline.validation import validate, write_results

    dataset, version = project_names(project).features_dataset, project.features.version
    suites: list[Any] = [features_suite(project)]
    suites += [project.folder / s if project.folder is not None else s for s in project.suites]
    for suite in suites:
        summary = validate(frame, suite, data_name=f"{dataset} {day}", render_docs=False, result_format="BOOLEAN_ONLY")
        if summary.success:
            continue
        summary = validate(frame, suite, data_name=f"{dataset} {day}", render_docs=True)
        write_results(summary, store, dataset, version, day)
        lines = "\n  ".join(summary.failure_lines())
        raise FeatureValidationError(
            f"project {project.project!r}, day {day}: features failed Great Expectations suite {summary.suite!r} "
            f"({len(summary.failures)} expectation(s)):\n  {lines}\nFull result: {summary.result_uri}\n"
            f"Nothing was written for {day}; other days are untouched.", summary)


# -- training and the gate -------------------------------------------------------------------------------------
def train_model(project: Project, model: str, store: PartitionStore, settings: Settings, as_of: str | dt.date, *,
                context: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None,
                window_days: int | None = None, validation_days: int | None = None) -> RegisteredModel:
    """Train a challenger of ``model`` on the window ending at ``as_of``, log it and register it."""
    from loopline.tracking import log_training_run
    from loopline.training import TrainingWindow, fit_window, load_window_of

    spec = project.models[model]
    window = TrainingWindow.ending(as_of, window_days or spec.training.window_days,
                                   validation_days or spec.training.validation_days)
    dataset = project_names(project).features_dataset
    frame = load_window_of(store, dataset, project.features.version, window)
    inputs = model_inputs(project, model, params)
    result = fit_window(frame, window, inputs, feature_set_version=project.features.version)
    ctx = {"project": project.project, "model": model, "task": spec.task, **dict(context or {})}
    return log_training_run(result, model_settings(settings, project, model), context=ctx)


@dataclass(frozen=True)
class GateResult:
    """The promotion decision of one challenger (XCom-sized)."""

    version: str
    action: str
    reason: str
    metric: str
    candidate: float | None
    champion: float | None
    champion_version: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def gate(project: Project, model: str, store: PartitionStore, settings: Settings, version: str, *,
         context: Mapping[str, Any] | None = None, force: bool = False) -> GateResult:
    """Judge challenger ``version`` against the champion on the same held-out days; promote or reject it."""
    from loopline import promotion as p
    from loopline.tracking import client
    from loopline.training import evaluate_inputs

    spec = project.models[model]
    cfg = model_settings(settings, project, model)
    registry = p.Registry(client(cfg), cfg.model_name)
    champion = registry.champion()
    inputs = model_inputs(project, model)
    record = p.judge(
        registry, version, metric=spec.gate_metric, higher_is_better=spec.higher_is_better,
        min_improvement=spec.promotion.min_improvement,
        guardrails={k: (b.min, b.max) for k, b in spec.promotion.guardrails.items()}, force=force, store=store,
        settings=cfg, context=context, dataset=project_names(project).features_dataset,
        evaluate=lambda loaded, frame, fsv: evaluate_inputs(loaded, frame, inputs))
    metric = spec.gate_metric
    return GateResult(version, record["action"], record["reason"], metric,
                      (record.get("candidate_metrics") or {}).get(metric),
                      (record.get("champion_metrics") or {}).get(metric),
                      champion if champion != version else None)


# -- scoring and drift -----------------------------------------------------------------------------------------
def score_model_day(project: Project, model: str, store: PartitionStore, settings: Settings, day: str | dt.date, *,
                    model_version: str | None = None, extra: Mapping[str, Any] | None = None) -> DayResult:
    """Score a day's features with the champion (or ``model_version``) into ``<P>/<M>/predictions``.

    ``extra`` goes into the partition's manifest (the Airflow task records its DAG run and try there)."""
    from loopline.scoring import score_partition
    from loopline.tracking import CHAMPION, load_model, resolve_alias

    d = as_day(day)
    cfg = model_settings(settings, project, model)
    scored = scored_spec(project, model)
    version = project.features.version
    if not store.exists(scored.features_dataset, version, d):
        raise PartitionNotFoundError(f"project {project.project!r}: no features partition for {d} at "
                                     f"{store.uri(scored.features_dataset, version, d)}; build it first")
    if model_version is None:
        model_version = resolve_alias(cfg, CHAMPION)
        if model_version is None:
            raise NoChampionError(f"registered model {cfg.model_name!r} has no @{CHAMPION} alias yet; train and "
                                  "promote one")
    uri = f"models:/{cfg.model_name}/{model_version}"
    loaded = load_model(uri, cfg)
    manifest = score_partition(store, d, loaded, version=version, model_name=cfg.model_name,
                               model_version=model_version, batch_rows=settings.score_batch_rows,
                               extra={"model_uri": uri, **(extra or {})}, scored=scored, workers=1)
    out = store.uri(scored.predictions_dataset, version, d)
    return DayResult(d.isoformat(), scored.predictions_dataset, "written", out, manifest.rows, manifest.content_hash)


def drift_model_day(project: Project, model: str, store: PartitionStore, settings: Settings,
                    day: str | dt.date, *, extra: Mapping[str, Any] | None = None,
                    window_on_disk: bool = False) -> DayCheck:
    """The day's drift check of ``model``: its trailing window against the reference of the version that scored
    the day; the report goes to ``<P>/<M>/drift`` (with ``extra`` as its ``run``: who checked the day).
    ``window_on_disk``: keep the window's days on local disk for the next check's process (a process per
    check, as Airflow runs them; a long-lived process keeps them in memory anyway)."""
    from loopline.monitoring import check_day

    cfg = model_settings(settings, project, model)
    return check_day(store, cfg, day, config=drift_config(project, model), monitored=monitored_spec(project, model),
                     extra=extra, window_on_disk=window_on_disk)
