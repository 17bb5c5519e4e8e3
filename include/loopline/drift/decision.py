"""From per-feature scores to one decision: severity, dataset drift, prediction drift, performance decay."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from loopline.drift.config import HIGHER_IS_BETTER, DriftConfig

if TYPE_CHECKING:
    from loopline.drift.report import FeatureDrift


@dataclass(frozen=True)
class PerformanceDecay:
    """Concept drift: the champion's metric on labelled recent data against its training-time validation.

    Attributes:
        metric: Metric name (e.g. ``"roc_auc"``).
        reference: Training-time validation value.
        current: Value on the recent labelled data.
        drop: Degradation, positive when worse (``reference - current`` for higher-is-better metrics).
        max_drop: Tolerated drop from the config.
        decayed: ``drop > max_drop``.
    """

    metric: str
    reference: float
    current: float
    drop: float
    max_drop: float
    decayed: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def performance_decay(
    reference_metric: float, current_metric: float, config: DriftConfig | None = None, *, metric: str | None = None
) -> PerformanceDecay:
    """Compare the champion's current metric with its training-time validation metric.

    Labels for a day's rows often arrive later (the next day): score yesterday's predictions with
    :func:`score_metric`, then call this with the validation metric logged at training time (also stored in
    ``ReferenceProfile.validation_metrics``) and pass the result to ``compare(..., performance=...)``.

    Args:
        reference_metric: Training-time validation value.
        current_metric: Value on recent labelled data.
        config: Supplies ``performance_metric`` and ``max_performance_drop``.
        metric: Overrides ``config.performance_metric``.

    Returns:
        The decay verdict.

    Raises:
        ValueError: Unknown metric direction, or a non-finite metric value.
    """
    cfg = config or DriftConfig()
    name = metric or cfg.performance_metric
    if name not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown performance metric {name!r}; known: {sorted(HIGHER_IS_BETTER)}")
    if not (math.isfinite(reference_metric) and math.isfinite(current_metric)):
        raise ValueError(f"{name}: metric values must be finite, got {reference_metric} and {current_metric}")
    drop = reference_metric - current_metric if HIGHER_IS_BETTER[name] else current_metric - reference_metric
    return PerformanceDecay(name, float(reference_metric), float(current_metric), float(drop),
                            cfg.max_performance_drop, drop > cfg.max_performance_drop)


def score_metric(y_true: npt.ArrayLike, y_score: npt.ArrayLike, metric: str = "roc_auc") -> float:
    """Compute a performance metric from labels and scores (scikit-learn, imported lazily).

    Args:
        y_true: Labels.
        y_score: Model scores (probabilities for classification metrics).
        metric: One of ``roc_auc``, ``average_precision`` (also named ``pr_auc``), ``log_loss``, ``brier``,
            ``accuracy`` (score ≥ 0.5), ``rmse``, ``mae``, ``r2``.

    Returns:
        The metric value.
    """
    from sklearn import metrics as skm

    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    funcs: dict[str, Any] = {
        "roc_auc": skm.roc_auc_score,
        "average_precision": skm.average_precision_score,
        "pr_auc": skm.average_precision_score,
        "log_loss": skm.log_loss,
        "brier": skm.brier_score_loss,
        "mae": skm.mean_absolute_error,
        "r2": skm.r2_score,
    }
    if metric == "accuracy":
        return float(skm.accuracy_score(y, s >= 0.5))
    if metric == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y, s)))
    if metric not in funcs:
        raise ValueError(f"unknown performance metric {metric!r}; known: {sorted(HIGHER_IS_BETTER)}")
    return float(funcs[metric](y, s))


@dataclass
class DriftDecision:
    """Whether the data drifted, and why.

    Attributes:
        drifted: The verdict that fires retraining.
        reasons: Sentences explaining the verdict, most important first.
        top_features: Up to ``top_k`` features as ``(name, psi)``, highest PSI first.
        share_drifted: Share of the reference's features (prediction column excluded) that drifted, counting
            every feature in ``not_compared`` as drifted.
        n_features: The reference's features judged (prediction column excluded), compared or not.
        drifted_features: Names of compared features whose severity reached ``drift_severity``.
        key_feature_share: Weighted share of drifted key features, when key features are configured.
        prediction_drift: ``{"column", "psi", "js", "severity", "drifted"}`` for the score column, if compared.
        performance_decay: Concept-drift verdict, when labels were available.
        signals: Missing-rate rises and out-of-range / unseen shares worth a look (do not decide alone).
        not_compared: Reference features that could not be compared, with the reason (absent from the current
            data, a changed dtype, no value left to compare); each counts as drifted.
    """

    drifted: bool
    reasons: list[str]
    top_features: list[tuple[str, float]]
    share_drifted: float
    n_features: int
    drifted_features: list[str]
    key_feature_share: float | None = None
    prediction_drift: dict[str, Any] | None = None
    performance_decay: PerformanceDecay | None = None
    signals: list[str] = field(default_factory=list)
    not_compared: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "drifted": self.drifted,
            "reasons": list(self.reasons),
            "top_features": [[name, _json_float(v)] for name, v in self.top_features],
            "share_drifted": _json_float(self.share_drifted),
            "n_features": self.n_features,
            "drifted_features": list(self.drifted_features),
            "key_feature_share": _json_float(self.key_feature_share),
            "prediction_drift": self.prediction_drift,
            "performance_decay": self.performance_decay.to_dict() if self.performance_decay else None,
            "signals": list(self.signals),
            "not_compared": dict(self.not_compared),
        }


def decide(
    features: Mapping[str, FeatureDrift],
    config: DriftConfig,
    performance: PerformanceDecay | None = None,
    *,
    not_compared: Mapping[str, str] | None = None,
) -> DriftDecision:
    """Turn per-feature results into the dataset-level decision.

    The dataset is drifted when any of these holds (each adds a reason):
    the share of drifted features ≥ ``drift_share``; the weighted share of drifted ``key_features`` ≥
    ``key_feature_share``; the prediction column drifted (if ``prediction_drift_triggers``); performance decayed.

    A feature that could not be compared counts as drifted — in the share, in the key-feature share and, for
    the prediction column, as prediction drift. Such a feature is either listed in ``not_compared`` (absent
    from the current data, dtype changed) or has severity ``"unknown"`` (no value left to score). The share is
    taken over all the reference's features, compared or not, so losing a column can never turn "drifted"
    into "no drift": an absent feature scores at least as high as it could have scored had it been there.

    Args:
        features: Per-feature results (the prediction column among them, if compared).
        config: Thresholds.
        performance: Optional concept-drift verdict from :func:`performance_decay`.
        not_compared: Reference features left out of ``features`` because they could not be compared,
            with the reason.

    Returns:
        The decision.
    """
    pred_col = config.prediction_column
    uncompared = dict(not_compared or {})
    for n, f in features.items():
        if f.severity == "unknown":
            uncompared.setdefault(n, f.notes[0] if f.notes else "scores undefined")
    evaluated = {n: f for n, f in features.items() if n != pred_col and n not in uncompared}
    lost = [n for n in uncompared if n != pred_col]
    drifted_names = [n for n, f in evaluated.items() if f.drifted]
    n_features = len(evaluated) + len(lost)
    n_drifted = len(drifted_names) + len(lost)
    share = n_drifted / n_features if n_features else 0.0
    reasons: list[str] = []
    drifted = False
    ranked = sorted(evaluated.values(), key=lambda f: (-_sortable(f.psi), f.name))
    top = [(f.name, f.psi) for f in ranked[: config.top_k]]

    named = ", ".join([*drifted_names[:10], *(f"{n} (not compared)" for n in lost[:10])])
    counted = f", counting {len(lost)} not compared as drifted" if lost else ""
    if n_features and share >= config.drift_share:
        drifted = True
        reasons.append(
            f"{n_drifted} of {n_features} features drifted ({share:.0%} ≥ {config.drift_share:.0%}"
            f" at severity ≥ {config.drift_severity}{counted}): {named}"
        )
    elif n_features:
        reasons.append(
            f"{n_drifted} of {n_features} features drifted ({share:.0%} < {config.drift_share:.0%}{counted})"
            + (f": {named}" if named else "")
        )
    elif pred_col not in features and pred_col not in uncompared:
        reasons.append("no feature was compared")

    key_share: float | None = None
    if config.key_features:
        present = {n: w for n, w in config.key_features.items() if n in evaluated or n in lost}
        total = sum(present.values())
        if total > 0:
            key_share = sum(w for n, w in present.items() if n in lost or evaluated[n].drifted) / total
            if key_share >= config.key_feature_share:
                drifted = True
                reasons.append(
                    f"weighted share of drifted key features is {key_share:.0%} ≥ {config.key_feature_share:.0%}"
                    + (" (not compared counts as drifted)" if any(n in lost for n in present) else "")
                )

    prediction, reason = _prediction_drift(features, uncompared, config)
    if reason is not None:
        drifted = True
        reasons.append(reason)

    if performance is not None and performance.decayed:
        drifted = True
        reasons.append(
            f"performance decay: {performance.metric} fell from {performance.reference:.4f} to "
            f"{performance.current:.4f} (drop {performance.drop:.4f} > {performance.max_drop})"
        )
    if lost:
        reasons.append("not compared, counted as drifted: " + "; ".join(f"{n}: {uncompared[n]}" for n in lost))
    return DriftDecision(
        drifted=drifted, reasons=reasons, top_features=top, share_drifted=share, n_features=n_features,
        drifted_features=drifted_names, key_feature_share=key_share, prediction_drift=prediction,
        performance_decay=performance, signals=_signals(features, config), not_compared=uncompared,
    )


def _prediction_drift(
    features: Mapping[str, FeatureDrift], uncompared: Mapping[str, str], config: DriftConfig
) -> tuple[dict[str, Any] | None, str | None]:
    """The prediction column's verdict, and the reason it fires the decision (None when it does not)."""
    pred_col = config.prediction_column
    prediction: dict[str, Any]
    if pred_col in uncompared:
        prediction = {"column": pred_col, "psi": None, "js": None, "severity": "unknown", "drifted": True,
                      "not_compared": uncompared[pred_col]}
        reason = f"prediction column {pred_col!r} could not be compared (counts as drifted): {uncompared[pred_col]}"
        return prediction, reason if config.prediction_drift_triggers else None
    if pred_col not in features:
        return None, None
    f = features[pred_col]
    prediction = {"column": pred_col, "psi": _json_float(f.psi), "js": _json_float(f.js),
                  "severity": f.severity, "drifted": f.drifted}
    fires = f.drifted and config.prediction_drift_triggers
    return prediction, f"prediction drift: {pred_col!r} PSI {f.psi:.3f} ({f.severity})" if fires else None


def _signals(features: Mapping[str, FeatureDrift], config: DriftConfig) -> list[str]:
    out: list[str] = []
    for f in features.values():
        rise = f.missing_rate_current - f.missing_rate_reference
        if rise >= config.missing_rate_increase:
            out.append(
                f"{f.name}: missing rate rose from {f.missing_rate_reference:.1%} to {f.missing_rate_current:.1%}"
            )
        inf_rise = f.inf_rate_current - f.inf_rate_reference
        if f.binning == "evidently" and inf_rise >= config.missing_rate_increase:
            out.append(f"{f.name}: {f.inf_rate_current:.1%} of current values are ±inf, dropped before scoring "
                       "(Evidently's rule; the reference binning counts them)")
        if f.out_of_range_current >= config.out_of_range_share and f.out_of_range_current > f.out_of_range_reference:
            what = "outside the reference range" if f.kind == "numeric" else "unseen categories"
            out.append(f"{f.name}: {f.out_of_range_current:.1%} of current values are {what}")
    return out


def _sortable(value: float) -> float:
    return -1.0 if math.isnan(value) else value


def _json_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
