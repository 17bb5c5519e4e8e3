"""Training and evaluation: a scikit-learn pipeline on a time window of feature partitions.

The window ends at an *as-of* day and covers ``window_days`` days; its last ``validation_days`` days are
held out (a time-based split: the model is judged on days after every day it learnt from). Given the same
partitions, settings and seed, a training run gives the same model and the same metrics.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from loopline.features import FEATURES_DATASET, categorical_columns, model_columns, numeric_columns
from loopline.store import PartitionStore, as_day, content_hash

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")
# Direction of each metric: +1 when larger is better.
METRIC_DIRECTION = {"roc_auc": 1, "pr_auc": 1, "log_loss": -1, "brier": -1}
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.08,
    "max_iter": 250,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
}


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
    validation_scores: Any = field(repr=False, default=None)


def build_pipeline(version: str, seed: int, params: dict[str, Any] | None = None) -> Pipeline:
    """Ordinal-encoded categoricals and raw numerics into a histogram gradient-boosted classifier.

    Unknown categories at scoring time are encoded as missing, which the classifier handles natively, as it
    does missing numerics (calm-wind gusts, absent weather).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    cats, nums = categorical_columns(version), numeric_columns(version)
    encoder = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1, dtype="float64"
    )
    pre = ColumnTransformer(
        [("categorical", encoder, cats), ("numeric", "passthrough", nums)],
        verbose_feature_names_out=False,
    )
    hp = {**DEFAULT_PARAMS, **(params or {})}
    clf = HistGradientBoostingClassifier(
        categorical_features=list(range(len(cats))),
        early_stopping=False,
        random_state=seed,
        **hp,
    )
    return Pipeline([("features", pre), ("classifier", clf)])


def model_input(frame: pd.DataFrame, version: str) -> pd.DataFrame:
    """The model's input columns of a features frame, with categoricals as plain object columns."""
    x = frame[model_columns(version)].copy()
    for col in categorical_columns(version):
        x[col] = x[col].astype(object).where(x[col].notna(), None)
    return x


def evaluate(model: Any, frame: pd.DataFrame, version: str) -> dict[str, float]:
    """ROC AUC, PR AUC, log loss and Brier score of ``model`` on a labelled features frame."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = frame["label"].to_numpy()
    if len(set(y.tolist())) < 2:
        raise TrainingDataError(f"evaluation needs both classes; the {len(y)} rows have only label {y[:1]}")
    p = model.predict_proba(model_input(frame, version))[:, 1]
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
    }


def load_window(store: PartitionStore, version: str, window: TrainingWindow) -> pd.DataFrame:
    """All committed feature partitions of the window (missing days are skipped)."""
    try:
        return store.read_range(FEATURES_DATASET, version, window.start, window.end)
    except FileNotFoundError as exc:
        raise TrainingDataError(f"no feature partitions in the window {window.start}..{window.end}: {exc}") from exc


def train(
    frame: pd.DataFrame,
    window: TrainingWindow,
    version: str,
    *,
    seed: int = 42,
    params: dict[str, Any] | None = None,
) -> TrainResult:
    """Fit on the window's training days and evaluate on its held-out days."""
    import pandas as pd

    days = pd.to_datetime(frame["ds"]).dt.date
    in_window = (days >= window.start) & (days <= window.end)
    frame = frame.loc[in_window].sort_values(["scheduled_departure_utc", "flight_id"], kind="stable")
    days = pd.to_datetime(frame["ds"]).dt.date
    is_val = (days >= window.validation_start).to_numpy()
    fit_df, val_df = frame.loc[~is_val], frame.loc[is_val]
    if len(fit_df) < 100 or len(val_df) < 20:
        raise TrainingDataError(
            f"window {window.start}..{window.end} has {len(fit_df)} training and {len(val_df)} validation rows; "
            "backfill more feature days or widen the window"
        )
    if fit_df["label"].nunique() < 2:
        raise TrainingDataError("the training days hold only one class of label; widen the window")
    hp = {**DEFAULT_PARAMS, **(params or {})}
    model = build_pipeline(version, seed, hp)
    model.fit(model_input(fit_df, version), fit_df["label"].to_numpy())
    metrics = evaluate(model, val_df, version)
    scores = model.predict_proba(model_input(val_df, version))[:, 1]
    return TrainResult(
        model=model,
        metrics=metrics,
        window=window,
        feature_set_version=version,
        params=hp,
        seed=seed,
        train_rows=len(fit_df),
        validation_rows=len(val_df),
        content_hash=content_hash(frame.reset_index(drop=True)),
        validation_label_rate=float(val_df["label"].mean()),
        reference=fit_df[model_columns(version)].reset_index(drop=True),
        validation_scores=scores,
    )
