"""Task types: what a model predicts, how its labels are read, and how it is judged.

A task type owns the prediction call (the positive-class probability for a binary classifier, the value for a
regression), the metrics and their direction, the label rule and the default estimator. Training, scoring,
promotion and monitoring ask the task type and never branch on the task themselves.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopline.project.spec import DEFAULT_METRIC, TASK_METRICS, plain_label

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.08,
    "max_iter": 250,
    "max_leaf_nodes": 31,
    "min_samples_leaf": 40,
    "l2_regularization": 1.0,
}


# OpenMP threads a model's fit and predict calls may use. One, because HistGradientBoosting opens an OpenMP
# fork/join barrier per tree (and per split), and on a 2-core machine shared with other tasks those barriers
# spin: one fit of a 60-day training window (54k rows, 250 trees) took 4 s of CPU on one thread and 15-50 s with two
# under load (measured with a one-off fit of that window; the models came out bit-identical). Loopline runs several
# tasks at once (DAG tasks, both models of a project), so it parallelises across tasks, not inside one.
MODEL_OPENMP_THREADS = 1


@functools.cache
def _controller() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finds the loaded OpenMP runtimes once per process


@contextlib.contextmanager
def model_threads() -> Iterator[None]:
    """Limit the calling thread's OpenMP runtimes to :data:`MODEL_OPENMP_THREADS` around a fit or predict."""
    with _controller().limit(limits=MODEL_OPENMP_THREADS, user_api="openmp"):
        yield


class LabelError(ValueError):
    """A label column cannot train or judge a model; the message names the column and what is wrong."""


@dataclass(frozen=True)
class TaskType:
    """One kind of supervised task."""

    name: str
    prediction: str  # what the predictions column holds: "probability" or "value"

    @property
    def metrics(self) -> dict[str, bool]:
        """Metric name -> True when larger is better."""
        return TASK_METRICS[self.name]

    @property
    def default_metric(self) -> str:
        return DEFAULT_METRIC[self.name]

    def labels(self, values: pd.Series, positive: Any = None, *, where: str = "") -> np.ndarray:
        """Label values as floats: the training target, NaN where the row has no usable label.

        Binary: 1.0 for ``positive``, 0.0 for any other present value. Regression: the value when finite;
        missing and ±inf become NaN (a row without a usable label is scored, never trained or judged on).
        """
        import numpy as np
        import pandas as pd

        present = values.notna().to_numpy()
        if self.name == "binary_classification":
            as_text = values.astype("string")
            is_pos = (as_text == str(plain_label(positive))).fillna(False).to_numpy(dtype=bool)
            out = np.where(is_pos, 1.0, 0.0)
            out[~present] = np.nan
            return out
        numeric = pd.to_numeric(values, errors="coerce").astype("float64").to_numpy(copy=True)
        bad_text = present & np.isnan(numeric)
        if bad_text.any():
            example = values[bad_text].iloc[0]
            raise LabelError(f"{where}label column {values.name!r}: {int(bad_text.sum())} value(s) are not numbers, "
                             f"e.g. {example!r}")
        numeric[~np.isfinite(numeric)] = np.nan
        return numeric

    def check_trainable(self, y: np.ndarray, *, column: str, positive: Any, where: str) -> None:
        """Raise :class:`LabelError` when the labelled rows cannot train this task (one class, constant)."""
        import numpy as np

        labelled = y[~np.isnan(y)]
        if self.name == "binary_classification":
            if labelled.size and not (labelled == 1.0).any():
                raise LabelError(f"{where}label column {column!r} holds one class only in the window: the positive "
                                 f"value {positive!r} never appears among its labels (check label.positive in the "
                                 "project file); the model is not trained")
            if np.unique(labelled).size < 2:
                raise LabelError(f"{where}label column {column!r} holds one class only in the window ({positive!r} "
                                 "on every row); a classifier needs both, so the model is not trained")
        elif labelled.size and np.unique(labelled).size < 2:
            raise LabelError(f"{where}label column {column!r} is constant in the window; nothing to learn "
                             "(the model is not trained)")

    def predict(self, model: Any, x: pd.DataFrame) -> np.ndarray:
        """The prediction column: the positive-class probability, or the predicted value."""
        import numpy as np

        if not len(x):
            return np.empty(0, dtype="float64")
        with model_threads():
            if self.name == "binary_classification":
                return np.asarray(model.predict_proba(x)[:, 1], dtype="float64")
            return np.asarray(model.predict(x), dtype="float64")

    def evaluate(self, y: np.ndarray, pred: np.ndarray, metrics: list[str] | None = None) -> dict[str, float]:
        """Metrics of predictions against labels (rows without a label are left out)."""
        import numpy as np
        from sklearn import metrics as skm

        keep = ~np.isnan(y)
        y, pred = y[keep], pred[keep]
        if y.size == 0:
            raise LabelError("no labelled rows to evaluate on")
        wanted = metrics or list(self.metrics)
        funcs: dict[str, Callable[[], float]]
        if self.name == "binary_classification":
            if np.unique(y).size < 2:
                raise LabelError(f"evaluation needs both classes; the {y.size} labelled rows have one")
            funcs = {
                "roc_auc": lambda: skm.roc_auc_score(y, pred),
                "pr_auc": lambda: skm.average_precision_score(y, pred),
                "log_loss": lambda: skm.log_loss(y, pred, labels=[0, 1]),
                "brier": lambda: skm.brier_score_loss(y, pred),
            }
        else:
            funcs = {
                "rmse": lambda: math.sqrt(skm.mean_squared_error(y, pred)),
                "mae": lambda: skm.mean_absolute_error(y, pred),
                "r2": lambda: skm.r2_score(y, pred),
            }
        return {name: float(funcs[name]()) for name in wanted}

    def default_estimator(self, categorical: list[str], numeric: list[str], seed: int,
                          params: Mapping[str, Any] | None = None) -> Any:
        """Ordinal-encoded categoricals and raw numerics into histogram gradient-boosted trees.

        Unknown categories at scoring time are encoded as missing, which the trees handle natively, as they do
        missing numerics.
        """
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OrdinalEncoder

        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1, dtype="float64"
        )
        pre = ColumnTransformer(
            [("categorical", encoder, categorical), ("numeric", "passthrough", numeric)],
            verbose_feature_names_out=False,
        )
        hp = {**DEFAULT_PARAMS, **(params or {})}
        binary = self.name == "binary_classification"
        trees = HistGradientBoostingClassifier if binary else HistGradientBoostingRegressor
        step = "classifier" if self.name == "binary_classification" else "regressor"
        unknown = sorted(set(hp) - set(trees().get_params()) - {"categorical_features", "random_state"})
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for {trees.__name__}; known: "
                             f"{sorted(trees().get_params())}")
        est = trees(categorical_features=list(range(len(categorical))), early_stopping=False, random_state=seed, **hp)
        return Pipeline([("features", pre), (step, est)])


TASK_TYPES: dict[str, TaskType] = {
    "binary_classification": TaskType("binary_classification", "probability"),
    "regression": TaskType("regression", "value"),
}


def task_type(name: str) -> TaskType:
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; one of {sorted(TASK_TYPES)}") from None


def build_estimator(task: TaskType, factory: Callable[..., Any] | None, params: Mapping[str, Any], *,
                    categorical: list[str], numeric: list[str], seed: int) -> Any:
    """The model to fit: the task's default, or the project's factory called with its params.

    A factory that accepts ``categorical``, ``numeric`` or ``seed`` keywords receives them too, so it can build
    its own preprocessing. Unknown hyperparameters fail here, before any data is read.
    """
    if factory is None:
        return task.default_estimator(categorical, numeric, seed, params)
    accepted = inspect.signature(factory).parameters
    extra = {k: v for k, v in (("categorical", categorical), ("numeric", numeric), ("seed", seed)) if k in accepted}
    return factory(**{**dict(params), **extra})
