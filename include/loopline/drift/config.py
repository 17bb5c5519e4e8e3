"""Thresholds and knobs of the drift decision (:class:`DriftConfig`) and the engine's input error."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

SEVERITIES: tuple[str, ...] = ("none", "moderate", "major")
"""Severity levels from the two PSI bands, in increasing order; ``"unknown"`` marks an undefined score."""

HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "average_precision": True,
    "pr_auc": True,  # the task types' name of average precision (what a project's gate metric and profile use)
    "accuracy": True,
    "f1": True,
    "r2": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
}
"""Direction of each performance metric Loopline knows; used to turn a change into a *drop*."""


class DriftInputError(ValueError):
    """Input the drift engine cannot compare; the message names the column and what to do."""


class DriftConfigError(ValueError):
    """A :class:`DriftConfig` value out of its domain; ``parameter`` names the field, the message says why."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class DriftConfig:
    """How drift scores become a decision.

    Attributes:
        psi_bands: Two increasing cut points on the severity metric: below the first is ``"none"``
            (no change), between them ``"moderate"`` (change), at or above the second ``"major"``.
            ``(0.1, 0.25)`` gives the stricter 0.25 convention.
        drift_severity: Lowest severity at which a feature counts as drifted (``"moderate"`` or ``"major"``).
        severity_metric: Score the bands apply to: ``"psi"`` (default), ``"js"`` (distance) or ``"kl"``.
        drift_share: The dataset is drifted when the share of drifted features is at least this.
        key_features: Optional weights of key features; the dataset is also drifted when the weighted share
            of drifted key features reaches ``key_feature_share``.
        key_feature_share: Threshold on the weighted share of drifted key features.
        prediction_column: Column holding the model score; scored as prediction drift, not as a feature.
        prediction_drift_triggers: Whether prediction drift at ``drift_severity`` makes the dataset drifted.
        performance_metric: Name of the champion's validation metric compared for concept drift.
        max_performance_drop: Largest tolerated absolute drop of that metric before it counts as decay.
        smoothing: Pseudo-proportion added to every bin before PSI and KL in ``reference`` mode
            (see :func:`loopline.drift.metrics.smooth`); JS uses the raw proportions.
        missing_rate_increase: Rise of a feature's missing rate reported as a signal in the decision reasons.
        out_of_range_share: Share of current values outside the reference range / unseen categories that is
            reported as a signal in the decision reasons.
        top_k: Number of features listed in ``DriftDecision.top_features``.
    """

    psi_bands: tuple[float, float] = (0.1, 0.2)
    drift_severity: str = "major"
    severity_metric: str = "psi"
    drift_share: float = 0.5
    key_features: dict[str, float] | None = None
    key_feature_share: float = 0.5
    prediction_column: str = "score"
    prediction_drift_triggers: bool = True
    performance_metric: str = "roc_auc"
    max_performance_drop: float = 0.05
    smoothing: float = 1e-4
    missing_rate_increase: float = 0.05
    out_of_range_share: float = 0.05
    top_k: int = 5

    def __post_init__(self) -> None:
        """Reject values the decision cannot use: every message names the parameter.

        Raises:
            DriftConfigError: A band that is not finite or not strictly increasing, a negative or non-finite
                smoothing, a share outside ``(0, 1]``, a non-finite threshold or weight, an unknown name.
        """
        bands = self.psi_bands
        if (not isinstance(bands, tuple | list) or len(bands) != 2 or not all(_finite(b) for b in bands)
                or not 0 <= bands[0] < bands[1]):
            raise DriftConfigError(
                "psi_bands", "psi_bands must be two finite numbers 0 ≤ low < high (e.g. 0.1,0.2), "
                f"got {bands!r}",
            )
        if not _finite(self.smoothing) or self.smoothing < 0:
            raise DriftConfigError(
                "smoothing", f"smoothing must be a finite number ≥ 0 (0 disables it), got {self.smoothing!r}"
            )
        for name in ("drift_share", "key_feature_share"):
            value = getattr(self, name)
            if not _finite(value) or not 0 < value <= 1:
                raise DriftConfigError(name, f"{name} must be in (0, 1], got {value!r}")
        for name in ("max_performance_drop", "missing_rate_increase", "out_of_range_share"):
            if not _finite(getattr(self, name)):
                raise DriftConfigError(name, f"{name} must be a finite number, got {getattr(self, name)!r}")
        if self.drift_severity not in SEVERITIES[1:]:
            raise DriftConfigError(
                "drift_severity", f"drift_severity must be 'moderate' or 'major', got {self.drift_severity!r}"
            )
        if self.severity_metric not in ("psi", "js", "kl"):
            raise DriftConfigError(
                "severity_metric", f"severity_metric must be 'psi', 'js' or 'kl', got {self.severity_metric!r}"
            )
        if self.key_features and any(not _finite(w) or w < 0 for w in self.key_features.values()):
            raise DriftConfigError(
                "key_features", f"key_features weights must be finite and ≥ 0, got {self.key_features!r}"
            )
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise DriftConfigError("top_k", f"top_k must be an integer ≥ 0, got {self.top_k!r}")

    def severity(self, score: float) -> str:
        """Map a score of ``severity_metric`` to ``"none"``, ``"moderate"``, ``"major"`` or ``"unknown"`` (NaN)."""
        if math.isnan(score):  # NaN: the score is undefined (e.g. an empty batch)
            return "unknown"
        low, high = self.psi_bands
        if score >= high:
            return "major"
        if score >= low:
            return "moderate"
        return "none"

    def is_drifted(self, severity: str) -> bool:
        """Whether a feature of this severity counts as drifted."""
        if severity not in SEVERITIES:
            return False
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.drift_severity)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> DriftConfig:
        """Build a config from ``LOOPLINE_*`` environment variables, falling back to the defaults.

        Recognised: ``LOOPLINE_PSI_BANDS`` ("0.1,0.25"), ``LOOPLINE_DRIFT_SEVERITY``,
        ``LOOPLINE_SEVERITY_METRIC``, ``LOOPLINE_DRIFT_SHARE``, ``LOOPLINE_KEY_FEATURES``
        ("dep_delay=2,distance=1"), ``LOOPLINE_KEY_FEATURE_SHARE``, ``LOOPLINE_PREDICTION_COLUMN``,
        ``LOOPLINE_PERFORMANCE_METRIC``, ``LOOPLINE_MAX_PERFORMANCE_DROP``, ``LOOPLINE_DRIFT_SMOOTHING``.

        Args:
            environ: Mapping to read instead of ``os.environ`` (tests).
            **overrides: Field values that win over the environment.

        Returns:
            The config.

        Raises:
            ValueError: A variable cannot be parsed, or its value is out of range
                (:class:`DriftConfigError`); the message names the variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        sources: dict[str, str] = {}  # field → the variable it came from, to name it in an error
        readers: dict[str, tuple[str, type]] = {
            "LOOPLINE_DRIFT_SEVERITY": ("drift_severity", str),
            "LOOPLINE_SEVERITY_METRIC": ("severity_metric", str),
            "LOOPLINE_DRIFT_SHARE": ("drift_share", float),
            "LOOPLINE_KEY_FEATURE_SHARE": ("key_feature_share", float),
            "LOOPLINE_PREDICTION_COLUMN": ("prediction_column", str),
            "LOOPLINE_PERFORMANCE_METRIC": ("performance_metric", str),
            "LOOPLINE_MAX_PERFORMANCE_DROP": ("max_performance_drop", float),
            "LOOPLINE_DRIFT_SMOOTHING": ("smoothing", float),
        }
        for var, (name, kind) in readers.items():
            raw = env.get(var)
            if raw is not None and raw.strip():
                try:
                    values[name] = kind(raw.strip())
                    sources[name] = f"{var}={raw!r}"
                except ValueError as exc:
                    raise ValueError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc
        bands = env.get("LOOPLINE_PSI_BANDS")
        if bands:
            parts = [p for p in bands.replace(";", ",").split(",") if p.strip()]
            try:
                low, high = (float(p) for p in parts)
            except ValueError as exc:
                raise ValueError(f"LOOPLINE_PSI_BANDS={bands!r} must be two numbers like '0.1,0.25'") from exc
            values["psi_bands"] = (low, high)
            sources["psi_bands"] = f"LOOPLINE_PSI_BANDS={bands!r}"
        keys = env.get("LOOPLINE_KEY_FEATURES")
        if keys:
            weights: dict[str, float] = {}
            for item in keys.split(","):
                name, _, weight = item.partition("=")
                try:
                    weights[name.strip()] = float(weight) if weight.strip() else 1.0
                except ValueError as exc:
                    raise ValueError(
                        f"LOOPLINE_KEY_FEATURES={keys!r} must look like 'dep_delay=2,distance=1'"
                    ) from exc
            values["key_features"] = weights
            sources["key_features"] = f"LOOPLINE_KEY_FEATURES={keys!r}"
        known = {f.name for f in fields(cls)}
        for name, value in overrides.items():
            if name not in known:
                raise TypeError(f"DriftConfig has no field {name!r}")
            values[name] = value
            sources.pop(name, None)
        try:
            return cls(**values)  # type: ignore[arg-type]
        except DriftConfigError as exc:
            if exc.parameter in sources:
                raise DriftConfigError(exc.parameter, f"{sources[exc.parameter]}: {exc}") from exc
            raise
