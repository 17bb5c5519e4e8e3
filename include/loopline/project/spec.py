"""The typed model of a project file (``project.yaml``).

A *project* is a folder holding ``project.yaml`` and, optionally, the project's own Python modules (a feature
builder, a custom source, an estimator factory). The file declares where a day's raw tables come from, which
columns are features (and which are keys and labels), and one or more models trained on those features. Every
key not written has a documented default (``loopline project check NAME`` prints the resolved project), and
every unknown key is an error, so a typo is caught before anything runs.

The smallest file Loopline accepts::

    project: shop
    start_date: 2021-01-01
    sources:
      orders:
        uri: "file:///srv/data/orders/ds={ds}/orders.parquet"
        format: parquet
    features:
      version: 1
      keys: [order_id]
      columns:
        - {name: channel, kind: categorical}
        - {name: basket_value, kind: numeric}
    models:
      returned:
        task: binary_classification
        label: {column: returned, positive: "yes"}

Validation happens here, once: everything downstream receives a :class:`Project`, never raw YAML. This module
imports pydantic only (no pandas, no MLflow), so DAG parsing can afford it.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_NAME_RE = re.compile(NAME_PATTERN)
_DOTTED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
_COLUMN_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

TaskName = Literal["binary_classification", "regression"]

# Metric name -> True when larger is better, per task. The task-type module owns how each is computed; the
# spec needs the names and directions to check a project file without importing scikit-learn.
TASK_METRICS: dict[str, dict[str, bool]] = {
    "binary_classification": {"roc_auc": True, "pr_auc": True, "log_loss": False, "brier": False},
    "regression": {"rmse": False, "mae": False, "r2": True},
}
DEFAULT_METRIC: dict[str, str] = {"binary_classification": "roc_auc", "regression": "rmse"}
DEFAULT_DTYPE: dict[str, str] = {"numeric": "float64", "categorical": "string"}
NUMERIC_DTYPES = frozenset({"float64", "float32", "int64", "int32", "Int64", "Int32", "bool", "boolean"})
CATEGORICAL_DTYPES = frozenset({"string", "category", "bool", "boolean", "int64", "Int64"})


def _check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a valid {what}: use lower-case letters, digits and '_', starting with "
                         "a letter (e.g. 'shop', 'late_return')")
    return value


def _check_dotted(value: Any) -> Any:
    if isinstance(value, str) and not _DOTTED_RE.match(value):
        raise ValueError(f"{value!r} is not a 'module:function' reference (e.g. 'features:build' for "
                         "features.py in the project folder, or 'sklearn.linear_model:LogisticRegression')")
    return value


def _check_cron(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    from croniter import croniter

    presets = {"@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@once"}
    if value not in presets and not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a cron expression; write five fields like '0 4 * * 1' (Mondays 04:00 UTC)"
                         f" or one of {sorted(presets)}")
    return value


def _version(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a version is a number or a short name, not true/false")
    if isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str) and (not value or "/" in value or not re.match(r"^[A-Za-z0-9_.\-]+$", value)):
        raise ValueError(f"{value!r} is not a version: use a number or a name of letters, digits, '.', '_', '-'")
    return value


DottedPath = Annotated[str, BeforeValidator(_check_dotted)]
Cron = Annotated[str | None, BeforeValidator(_check_cron)]
Version = Annotated[str, BeforeValidator(_version)]


class Spec(BaseModel):
    """Base of every spec object: unknown keys are errors, objects are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Source(Spec):
    """One raw table, read one day at a time.

    A source with a ``uri`` is a ``files`` source; the others name their ``kind``.
    """

    kind: Literal["files", "bigquery", "store", "python"] = Field(
        "files", description="`files` (a URI template), `bigquery`, `store` (raw landed in the store) or `python`.")
    uri: str | None = Field(None, description="files: URI template with `{ds}` (`file://`, `s3://`, `gs://`, or a "
                                              "path relative to the project folder).")
    format: Literal["parquet", "csv"] | None = Field(
        None, description="files: `parquet` or `csv` (default: from the URI's suffix, else parquet).")
    table: str | None = Field(None, description="bigquery: `project.dataset.table`, filtered on `day_column`.")
    sql: str | None = Field(None, description="bigquery: a query that uses the day as the parameter `@ds` (a DATE).")
    day_column: str | None = Field(
        None, description="A column holding each row's day: rows of another day are rejected (files, store, "
                          "python), and bigquery `table` sources filter on it.")
    dataset: str | None = Field(None, description="store: the raw dataset (default `<project>/raw/<source>`).")
    function: DottedPath | None = Field(None, description="python: `module:function` called with the day "
                                                          "(`datetime.date`), returning a pandas DataFrame.")
    lookback_days: int = Field(0, ge=0, le=31, description="Also read this many days before the day (the builder "
                                                           "receives them concatenated, e.g. for a point-in-time "
                                                           "join with yesterday's observations).")
    conn_id: str | None = Field(None, description="Airflow connection (bigquery: default `google_cloud_default`).")
    location: str | None = Field(None, description="bigquery: job location.")

    @model_validator(mode="before")
    @classmethod
    def _kind_from_uri(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" not in data and "uri" not in data:
            raise ValueError("a source needs either 'uri' (a files source) or 'kind' (bigquery, store, python)")
        return data

    @model_validator(mode="after")
    def _fields_of_kind(self) -> Source:
        allowed = {
            "files": {"uri", "format", "day_column"},
            "bigquery": {"table", "sql", "day_column", "conn_id", "location"},
            "store": {"dataset", "day_column"},
            "python": {"function", "day_column"},
        }[self.kind]
        given = {k for k in ("uri", "format", "table", "sql", "day_column", "dataset", "function", "conn_id",
                             "location") if getattr(self, k) is not None}
        stray = sorted(given - allowed)
        if stray:
            raise ValueError(f"{', '.join(stray)}: does not apply to a {self.kind} source (it takes "
                             f"{', '.join(sorted(allowed))})")
        if self.kind == "files":
            if not self.uri or "{ds}" not in self.uri:
                raise ValueError("a files source needs 'uri' with the day as {ds}, e.g. "
                                 "'file:///data/orders/ds={ds}/orders.parquet'")
        elif self.kind == "bigquery":
            if bool(self.table) == bool(self.sql):
                raise ValueError("a bigquery source takes exactly one of 'table' (with 'day_column') or 'sql'")
            if self.table and not self.day_column:
                raise ValueError("a bigquery 'table' source needs 'day_column' (the DATE column holding each "
                                 "row's day)")
            if self.sql and "@ds" not in self.sql:
                raise ValueError("a bigquery 'sql' source must use the day as the query parameter @ds "
                                 "(never format the day into the text)")
        elif self.kind == "python" and not self.function:
            raise ValueError("a python source needs 'function: module:function'")
        return self

    @property
    def file_format(self) -> str:
        if self.format:
            return self.format
        name = (self.uri or "").lower()
        return "csv" if name.endswith((".csv", ".csv.gz", ".tsv")) else "parquet"


class Column(Spec):
    """A feature column: a model input."""

    name: str = Field(description="Column name in the features frame.")
    kind: Literal["numeric", "categorical"] = Field(description="`numeric` or `categorical`.")
    dtype: str | None = Field(None, description="Stored dtype (default: float64 for numeric, string for categorical).")
    description: str = Field("", description="What the column means (shown in docs and suites).")
    range: tuple[float | None, float | None] | None = Field(
        None, description="`[min, max]` plausible values (either may be null); a value outside fails validation.")
    values: list[str | int | float | bool] | None = Field(
        None, description="Allowed values of a categorical column; another value fails validation.")
    max_missing: float | None = Field(
        None, ge=0, le=1, description="Largest share of missing values in a day (default: any).")

    @field_validator("name")
    @classmethod
    def _column_name(cls, value: str) -> str:
        if not _COLUMN_RE.match(value):
            raise ValueError(f"{value!r} is not a usable column name")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        allowed = NUMERIC_DTYPES if self.kind == "numeric" else CATEGORICAL_DTYPES
        if self.dtype is not None and self.dtype not in allowed:
            raise ValueError(f"dtype {self.dtype!r} does not fit a {self.kind} column; use one of {sorted(allowed)}")
        if self.kind == "categorical" and self.range is not None:
            raise ValueError("'range' applies to numeric columns; a categorical column takes 'values'")
        if self.kind == "numeric" and self.values is not None:
            raise ValueError("'values' applies to categorical columns; a numeric column takes 'range'")
        if self.range is not None:
            low, high = self.range
            if low is not None and high is not None and low > high:
                raise ValueError(f"range [{low}, {high}] is empty: write [min, max]")
        return self

    @property
    def resolved_dtype(self) -> str:
        return self.dtype or DEFAULT_DTYPE[self.kind]


class Features(Spec):
    """The project's feature set: keys, columns and how they are built from the day's tables."""

    version: Version = Field("1", description="Feature-set version: partitions are written under `v=<version>`; "
                                             "a new version is backfilled beside the old one.")
    keys: list[str] = Field(min_length=1, description="Columns identifying a row (kept in every partition; never "
                                                      "model inputs).")
    columns: list[Column] = Field(min_length=1, description="The feature columns.")
    build: DottedPath | None = Field(
        None, description="`module:function(tables, ds)` returning the day's features frame (keys, features and "
                          "label columns). Without it, columns are taken as they are from the (only) source.")

    @model_validator(mode="after")
    def _unique(self) -> Features:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"feature column(s) {dupes} declared more than once")
        both = sorted(set(names) & set(self.keys))
        if both:
            raise ValueError(f"{both} is both a key and a feature column; keys are never model inputs")
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("keys are listed more than once")
        return self

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)


def plain_label(value: Any) -> Any:
    """A label value in the form the task types compare (YAML ``true`` and ``"True"`` are one value)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Label(Spec):
    """Where a model's label comes from."""

    column: str = Field(description="Column of the features frame (carried beside the keys, never an input).")
    positive: str | int | float | bool | None = Field(
        None, description="binary_classification: the value that means the positive class (required).")
    values: list[str | int | float | bool] | None = Field(
        None, description="binary_classification: every value the label may take, `positive` among them; a day "
                          "holding another value fails validation naming the column. Without it, any present "
                          "value other than `positive` counts as negative.")
    range: tuple[float | None, float | None] | None = Field(
        None, description="regression: `[min, max]` plausible label values (either may be null); a day holding a "
                          "value outside fails validation. Labels must be finite in any case.")


class Estimator(Spec):
    """The scikit-learn estimator, when the task's default is not wanted."""

    factory: DottedPath | None = Field(
        None, description="`module:function` returning a scikit-learn estimator or pipeline (it receives the "
                          "`params`). Default: the task's gradient-boosted trees behind an ordinal encoder.")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the factory (or the "
                                                                     "default estimator's hyperparameters).")


class Metric(Spec):
    """The metric the champion/challenger gate compares, and the others to log."""

    name: str | None = Field(None, description="Gate metric (default: roc_auc for binary, rmse for regression).")
    log: list[str] | None = Field(None, description="Metrics to log (default: every metric of the task).")


class Training(Spec):
    window_days: int = Field(60, ge=2, le=3660, description="Days of features a training run uses, ending at its "
                                                            "as-of day.")
    validation_days: int = Field(7, ge=1, description="Trailing days of the window held out to judge the models.")
    seed: int = Field(42, ge=0, description="Random seed of the estimator.")
    min_rows: int = Field(100, ge=1, description="Fewest labelled training rows a run accepts.")

    @model_validator(mode="after")
    def _window(self) -> Training:
        if self.validation_days >= self.window_days:
            raise ValueError(f"validation_days ({self.validation_days}) must be smaller than window_days "
                             f"({self.window_days})")
        return self


class Bound(Spec):
    min: float | None = Field(None, description="Smallest acceptable value.")
    max: float | None = Field(None, description="Largest acceptable value.")


class Promotion(Spec):
    min_improvement: float = Field(0.0, ge=0, description="How much better (in the gate metric's direction) the "
                                                          "challenger must be on the same days.")
    guardrails: dict[str, Bound] = Field(default_factory=dict, description="Per metric bounds the challenger must "
                                                                           "hold, e.g. `{brier: {max: 0.25}}`.")


class Drift(Spec):
    psi_bands: tuple[float, float] = Field((0.1, 0.2), description="PSI severity bands (low, high); 0.1 / 0.25 is "
                                                                   "the stricter convention.")
    drifted_share: float = Field(0.5, gt=0, le=1, description="Share of drifted features that makes the data drifted.")
    key_features: list[str] = Field(
        default_factory=list, description="Key features, weighted equally: the data is also drifted when this share "
                                          "of them drifted reaches drifted_share.")
    window_days: int = Field(14, ge=1, le=366, description="Trailing days each daily check compares with the "
                                                           "training reference.")
    cooldown_days: int = Field(14, ge=0, description="A drift retrain is skipped when its window ends within this "
                                                     "many days of the newest registered version's window.")

    @field_validator("psi_bands")
    @classmethod
    def _bands(cls, value: tuple[float, float]) -> tuple[float, float]:
        import math

        low, high = value
        if not (math.isfinite(low) and math.isfinite(high)) or not 0 < low < high:
            raise ValueError(f"psi_bands must be two finite numbers 0 < low < high, got {list(value)}")
        return value


class ModelSchedules(Spec):
    retrain: Cron = Field("0 4 * * 1", description="Cron of scheduled retraining (UTC); null: only on drift and "
                                                   "by hand.")


class Model(Spec):
    """One model trained on the project's features."""

    task: TaskName = Field(description="`binary_classification` or `regression`.")
    label: Label = Field(description="The label column (and the positive value for binary).")
    label_lag_days: int = Field(1, ge=0, le=366, description="Days after a day until its labels are known.")
    features: list[str] | None = Field(None, description="Subset of the project's feature columns (default: all).")
    estimator: Estimator = Field(default_factory=Estimator, description="The estimator (default per task).")
    metric: Metric = Field(default_factory=Metric, description="The gate metric and the metrics to log.")
    training: Training = Field(default_factory=Training, description="Window, held-out days and seed.")
    promotion: Promotion = Field(default_factory=Promotion, description="When a challenger becomes champion.")
    drift: Drift = Field(default_factory=Drift, description="Drift bands and windows.")
    schedules: ModelSchedules = Field(default_factory=ModelSchedules, description="Cron of retraining.")
    registered_model_name: str | None = Field(
        None, description="MLflow registered model (default `<project>.<model>`).")

    @model_validator(mode="before")
    @classmethod
    def _metric_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("metric"), str):
            data = {**data, "metric": {"name": data["metric"]}}
        return data

    @model_validator(mode="after")
    def _task_rules(self) -> Model:
        metrics = TASK_METRICS[self.task]
        if self.task == "binary_classification" and self.label.positive is None:
            raise ValueError("label.positive is required for binary_classification: the label value that means "
                             "the positive class, e.g. {column: returned, positive: 'yes'}")
        if self.task == "regression" and self.label.positive is not None:
            raise ValueError("label.positive applies to binary_classification only; remove it for a regression")
        if self.task == "regression" and self.label.values is not None:
            raise ValueError("label.values applies to binary_classification; a regression label takes label.range")
        if self.task == "binary_classification" and self.label.range is not None:
            raise ValueError("label.range applies to regression; a binary label takes label.values")
        if self.label.values is not None:
            allowed = {str(plain_label(v)) for v in self.label.values}
            if str(plain_label(self.label.positive)) not in allowed:
                raise ValueError(f"label.positive {self.label.positive!r} is not among label.values "
                                 f"{self.label.values!r}; list it there")
            if len(allowed) < 2:
                raise ValueError(f"label.values {self.label.values!r} holds one value; a binary label needs the "
                                 "positive value and at least one negative")
        if self.label.range is not None:
            low, high = self.label.range
            if low is not None and high is not None and low > high:
                raise ValueError(f"label.range [{low}, {high}] is empty: write [min, max]")
        for name in [self.metric.name, *(self.metric.log or []), *self.promotion.guardrails]:
            if name is not None and name not in metrics:
                raise ValueError(f"metric {name!r} is not a {self.task} metric; use one of {sorted(metrics)}")
        return self

    @property
    def gate_metric(self) -> str:
        return self.metric.name or DEFAULT_METRIC[self.task]

    @property
    def logged_metrics(self) -> list[str]:
        return list(self.metric.log or TASK_METRICS[self.task])

    @property
    def higher_is_better(self) -> bool:
        return TASK_METRICS[self.task][self.gate_metric]


class ProjectSchedules(Spec):
    features: Cron = Field("@daily", description="Cron of the features DAG: one run (partition) per day.")


class Project(Spec):
    """A model project: its sources, its feature set and its models."""

    project: str = Field(description="Project name `[a-z][a-z0-9_]*`: names DAGs, assets, store folders and the "
                                     "MLflow experiment.")
    start_date: dt.date = Field(description="First day of data.")
    end_date: dt.date | None = Field(None, description="Last day of data (default: open-ended).")
    description: str = Field("", description="Shown in the DAGs' docs.")
    owner: str = Field("loopline", description="Owner of the generated DAGs.")
    sources: dict[str, Source] = Field(min_length=1, description="Raw tables by name.")
    features: Features = Field(description="The feature set.")
    models: dict[str, Model] = Field(min_length=1, description="Models by name `[a-z][a-z0-9_]*`.")
    schedules: ProjectSchedules = Field(default_factory=ProjectSchedules, description="Cron of the features DAG.")
    suites: list[str] = Field(default_factory=list, description="Extra Great Expectations suite files (JSON, "
                                                                "relative to the project folder) run on every "
                                                                "features day.")

    _path: Path | None = PrivateAttr(None)

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str) -> str:
        return _check_name(value, "project name")

    @field_validator("sources", "models")
    @classmethod
    def _entry_names(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        for name in value:
            _check_name(name, f"{str(info.field_name).rstrip('s')} name")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Project:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        if self.features.build is None and len(self.sources) != 1:
            raise ValueError(f"with {len(self.sources)} sources, features.build must say how to join them "
                             "('module:function' receiving the day's tables)")
        feature_names = [c.name for c in self.features.columns]
        for name, model in self.models.items():
            where = f"models.{name}"
            if model.label.column in feature_names:
                raise ValueError(f"{where}.label.column: {model.label.column!r} is also a feature column; a label "
                                 "is never a model input (remove it from features.columns)")
            if model.label.column in self.features.keys:
                raise ValueError(f"{where}.label.column: {model.label.column!r} is a key column")
            unknown = [f for f in model.features or [] if f not in feature_names]
            if unknown:
                raise ValueError(f"{where}.features: {unknown} are not feature columns of the project "
                                 f"(known: {feature_names})")
            if model.features is not None and not model.features:
                raise ValueError(f"{where}.features is empty; leave it out to use every feature column")
            for key in model.drift.key_features:
                if key not in self.model_features(name):
                    raise ValueError(f"{where}.drift.key_features: {key!r} is not an input of this model")
        return self

    # -- derived names (one scheme, documented in the README) ----------------------------------------------------
    @property
    def path(self) -> Path | None:
        """The ``project.yaml`` this project was loaded from."""
        return self._path

    @property
    def folder(self) -> Path | None:
        return self._path.parent if self._path is not None else None

    def model_features(self, model: str) -> list[str]:
        """The model's input columns, in the project's declared order."""
        chosen = self.models[model].features
        return [c.name for c in self.features.columns if chosen is None or c.name in chosen]

    def label_columns(self) -> list[str]:
        """Label columns of every model, each once, in model order."""
        out: list[str] = []
        for m in self.models.values():
            if m.label.column not in out:
                out.append(m.label.column)
        return out
