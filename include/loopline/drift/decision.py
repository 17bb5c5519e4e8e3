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

    Labels for a day's flights arrive the next day: score yesterday's predictions with
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
        metric: One of ``roc_auc``, ``average_precision``, ``log_loss``, ``brier``, ``accuracy`` (score ≥ 0.5),
            ``rmse``, ``mae``, ``r2``.

    Returns:
        The metric value.
    """
    from sklearn import metrics as skm

    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    funcs: dict[str, Any] = {
        "roc_auc": skm.roc_auc_score,
        "average_precision": skm.average_precision_score,
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
        share_drifted: Share of evaluated features (prediction column excluded) that drifted.
        n_features: Evaluated features.
        drifted_features: Names of drifted features.
        key_feature_share: Weighted share of drifted key features, when key features are configured.
        prediction_drift: ``{"column", "psi", "js", "severity", "drifted"}`` for the score column, if compared.
        performance_decay: Concept-drift verdict, when labels were available.
        signals: Missing-rate rises and out-of-range / unseen shares worth a look (do not decide alone).
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
        }


def decide(
    features: Mapping[str, FeatureDrift], config: DriftConfig, performance: PerformanceDecay | None = None
) -> DriftDecision:
    """Turn per-feature results into the dataset-level decision.

    The dataset is drifted when any of these holds (each adds a reason):
    the share of drifted features ≥ ``drift_share``; the weighted share of drifted ``key_features`` ≥
    ``key_feature_share``; the prediction column drifted (if ``prediction_drift_triggers``); performance decayed.

    Args:
        features: Per-feature results (the prediction column among them, if compared).
        config: Thresholds.
        performance: Optional concept-drift verdict from :func:`performance_decay`.

    Returns:
        The decision.
    """
    pred_col = config.prediction_column
    evaluated = {n: f for n, f in features.items() if n != pred_col and f.severity != "unknown"}
    unknown = [n for n, f in features.items() if f.severity == "unknown"]
    drifted_names = [n for n, f in evaluated.items() if f.drifted]
    share = len(drifted_names) / len(evaluated) if evaluated else 0.0
    reasons: list[str] = []
    drifted = False
    ranked = sorted(evaluated.values(), key=lambda f: (-_sortable(f.psi), f.name))
    top = [(f.name, f.psi) for f in ranked[: config.top_k]]

    if evaluated and share >= config.drift_share:
        drifted = True
        reasons.append(
            f"{len(drifted_names)} of {len(evaluated)} features drifted ({share:.0%} ≥ {config.drift_share:.0%}"
            f" at severity ≥ {config.drift_severity}): {', '.join(drifted_names[:10])}"
        )
    elif evaluated:
        reasons.append(
            f"{len(drifted_names)} of {len(evaluated)} features drifted ({share:.0%} < {config.drift_share:.0%})"
            + (f": {', '.join(drifted_names[:10])}" if drifted_names else "")
        )
    else:
        reasons.append("no feature could be compared (empty data or no shared columns)")

    key_share: float | None = None
    if config.key_features:
        present = {n: w for n, w in config.key_features.items() if n in evaluated}
        total = sum(present.values())
        if total > 0:
            key_share = sum(w for n, w in present.items() if evaluated[n].drifted) / total
            if key_share >= config.key_feature_share:
                drifted = True
                reasons.append(
                    f"weighted share of drifted key features is {key_share:.0%} ≥ {config.key_feature_share:.0%}"
                )

    prediction: dict[str, Any] | None = None
    if pred_col in features and features[pred_col].severity != "unknown":
        f = features[pred_col]
        prediction = {"column": pred_col, "psi": _json_float(f.psi), "js": _json_float(f.js),
                      "severity": f.severity, "drifted": f.drifted}
        if f.drifted and config.prediction_drift_triggers:
            drifted = True
            reasons.append(f"prediction drift: {pred_col!r} PSI {f.psi:.3f} ({f.severity})")

    if performance is not None and performance.decayed:
        drifted = True
        reasons.append(
            f"performance decay: {performance.metric} fell from {performance.reference:.4f} to "
            f"{performance.current:.4f} (drop {performance.drop:.4f} > {performance.max_drop})"
        )
    if unknown:
        reasons.append(f"not comparable (empty after cleaning): {', '.join(unknown)}")
    return DriftDecision(
        drifted=drifted, reasons=reasons, top_features=top, share_drifted=share, n_features=len(evaluated),
        drifted_features=drifted_names, key_feature_share=key_share, prediction_drift=prediction,
        performance_decay=performance, signals=_signals(features, config),
    )


def _signals(features: Mapping[str, FeatureDrift], config: DriftConfig) -> list[str]:
    out: list[str] = []
    for f in features.values():
        rise = f.missing_rate_current - f.missing_rate_reference
        if rise >= config.missing_rate_increase:
            out.append(
                f"{f.name}: missing rate rose from {f.missing_rate_reference:.1%} to {f.missing_rate_current:.1%}"
            )
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
