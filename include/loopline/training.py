"""Training and evaluation: a scikit-learn pipeline on a time window of feature partitions.

The window ends at an *as-of* day and covers ``window_days`` days; its last ``validation_days`` days are
held out (a time-based split: the model is judged on days after every day it learnt from). Given the same
partitions, settings and seed, a training run gives the same model and the same metrics.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from loopline.project.spec import TASK_METRICS
from loopline.store import PartitionStore, as_day, content_hash

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

# Direction of each metric: +1 when larger is better (every task's metrics: the task types own them).
METRIC_DIRECTION = {name: (1 if higher else -1) for task in TASK_METRICS.values() for name, higher in task.items()}


class TrainingDataError(ValueError):
    """The training window cannot train a model (no partitions, one class only, too few rows)."""


@dataclass(frozen=True)
class TrainingWindow:
    """Days ``start..end`` inclusive; ``validation_start..end`` is held out."""

    start: dt.date
    end: dt.date
    validation_start: dt.date

    @classmethod
    def ending(cls, as_of: str | dt.date, window_days: int, validation_days: int) -> TrainingWindow:
        end = as_day(as_of)
        if validation_days < 1 or window_days <= validation_days:
            raise TrainingDataError(
                f"window_days ({window_days}) must exceed validation_days ({validation_days}) ≥ 1"
            )
        return cls(
            start=end - dt.timedelta(days=window_days - 1),
            end=end,
            validation_start=end - dt.timedelta(days=validation_days - 1),
        )

    def as_dict(self) -> dict[str, str]:
        return {k: v.isoformat() for k, v in asdict(self).items()}


@dataclass
class TrainResult:
    """A fitted model with what it was fitted on and how it scored on the held-out days."""

    model: Pipeline
    metrics: dict[str, float]
    window: TrainingWindow
    feature_set_version: str
    params: dict[str, Any]
    seed: int
    train_rows: int
    validation_rows: int
    content_hash: str
    validation_label_rate: float
    reference: pd.DataFrame = field(repr=False)
    columns: list[str]
    categorical: list[str]
    task: str
    validation_scores: Any = field(repr=False, default=None)


@dataclass(frozen=True)
class ModelInputs:
    """What a training run needs to know about a model: its inputs, its label and its estimator.

    ``factory`` (optional) builds the estimator from ``params``; without it the task's default is used.
    """

    columns: list[str]
    categorical: list[str]
    task: str
    label: str
    positive: Any = 1
    params: dict[str, Any] = field(default_factory=dict)
    factory: Any = None
    seed: int = 42
    min_rows: int = 100
    metrics: tuple[str, ...] = ()
    sort_by: tuple[str, ...] = ()
    where: str = ""

    @property
    def numeric(self) -> list[str]:
        return [c for c in self.columns if c not in self.categorical]


def model_frame(frame: pd.DataFrame, columns: list[str], categorical: list[str]) -> pd.DataFrame:
    """The model's input columns of a features frame, with categoricals as plain object columns."""
    x = frame[columns].copy()
    for col in categorical:
        x[col] = x[col].astype(object).where(x[col].notna(), None)
    return x


def evaluate_inputs(model: Any, frame: pd.DataFrame, inputs: ModelInputs) -> dict[str, float]:
    """The task's metrics of ``model`` on the labelled rows of a features frame."""
    from loopline.tasktypes import LabelError, task_type

    task = task_type(inputs.task)
    y = task.labels(frame[inputs.label], inputs.positive)
    try:
        return task.evaluate(y, task.predict(model, model_frame(frame, inputs.columns, inputs.categorical)),
                             list(inputs.metrics) or None)
    except LabelError as exc:
        raise TrainingDataError(str(exc)) from exc


def load_window_of(store: PartitionStore, dataset: str, version: str, window: TrainingWindow) -> pd.DataFrame:
    """All committed partitions of ``dataset`` in the window (missing days are skipped)."""
    try:
        return store.read_range(dataset, version, window.start, window.end)
    except FileNotFoundError as exc:
        raise TrainingDataError(f"no feature partitions of {dataset} in the window {window.start}..{window.end}: "
                                f"{exc}") from exc


def fit_window(frame: pd.DataFrame, window: TrainingWindow, inputs: ModelInputs, *,
               feature_set_version: str) -> TrainResult:
    """Fit on the window's training days and evaluate on its held-out days.

    Rows whose label is missing (or not usable: ±inf for a regression) are neither trained nor judged on.
    """
    import numpy as np
    import pandas as pd

    from loopline.tasktypes import LabelError, build_estimator, model_threads, task_type

    task = task_type(inputs.task)
    where = inputs.where
    days = pd.to_datetime(frame["ds"]).dt.date
    in_window = (days >= window.start) & (days <= window.end)
    frame = frame.loc[in_window]
    order = [c for c in inputs.sort_by if c in frame.columns] or ["ds"]
    frame = frame.sort_values(order, kind="stable")
    try:
        y_all = task.labels(frame[inputs.label], inputs.positive, where=where)
    except LabelError as exc:
        raise TrainingDataError(str(exc)) from exc
    labelled = ~np.isnan(y_all)
    days = pd.to_datetime(frame["ds"]).dt.date
    is_val = (days >= window.validation_start).to_numpy()
    fit_mask, val_mask = labelled & ~is_val, labelled & is_val
    fit_df, val_df = frame.loc[fit_mask], frame.loc[val_mask]
    if int(fit_mask.sum()) < inputs.min_rows or int(val_mask.sum()) < 20:
        raise TrainingDataError(
            f"{where}window {window.start}..{window.end} has {int(fit_mask.sum())} labelled training and "
            f"{int(val_mask.sum())} labelled validation rows (at least {inputs.min_rows} and 20 needed); backfill "
            "more feature days or widen the window"
        )
    try:
        task.check_trainable(y_all[fit_mask], column=inputs.label, positive=inputs.positive, where=where)
    except LabelError as exc:
        raise TrainingDataError(str(exc)) from exc
    model = build_estimator(task, inputs.factory, inputs.params, categorical=inputs.categorical,
                            numeric=inputs.numeric, seed=inputs.seed)
    with model_threads():
        model.fit(model_frame(fit_df, inputs.columns, inputs.categorical), y_all[fit_mask])
    x_val = model_frame(val_df, inputs.columns, inputs.categorical)
    scores = task.predict(model, x_val)
    try:
        metrics = task.evaluate(y_all[val_mask], scores, list(inputs.metrics) or None)
    except LabelError as exc:
        raise TrainingDataError(f"{where}{exc}") from exc
    return TrainResult(
        model=model,
        metrics=metrics,
        window=window,
        feature_set_version=feature_set_version,
        params=dict(inputs.params),
        seed=inputs.seed,
        train_rows=len(fit_df),
        validation_rows=len(val_df),
        content_hash=content_hash(frame.reset_index(drop=True)),
        validation_label_rate=float(np.mean(y_all[val_mask])),
        reference=fit_df[inputs.columns].reset_index(drop=True),
        validation_scores=scores,
        columns=list(inputs.columns),
        categorical=list(inputs.categorical),
        task=inputs.task,
    )

