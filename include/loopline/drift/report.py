"""Result objects: :class:`FeatureDrift` per column and :class:`DriftReport` for a whole comparison."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from loopline.drift import metrics
from loopline.drift.config import DriftConfig
from loopline.drift.decision import DriftDecision, _json_float


@dataclass
class FeatureDrift:
    """Drift of one column.

    Attributes:
        name: Column name.
        kind: ``"numeric"`` or ``"categorical"``.
        binning: ``"reference"`` or ``"evidently"``.
        psi: Population stability index (natural log).
        kl: KL(reference ‖ current), natural log.
        js: Jensen–Shannon *distance*, natural log (``scipy.spatial.distance.jensenshannon``), in [0, √ln2].
        js_divergence: Its square, the JS divergence in nats, in [0, ln 2].
        js_base2: JS distance with base-2 logs (``jensenshannon(p, q, base=2)``), in [0, 1].
        severity: ``"none"``, ``"moderate"``, ``"major"`` from the config bands, or ``"unknown"``.
        drifted: Severity at or above ``DriftConfig.drift_severity``.
        n_reference: Reference rows.
        n_current: Current rows.
        missing_rate_reference: Share of NaN/None in the reference.
        missing_rate_current: Share of NaN/None in the current sample.
        inf_rate_reference: Share of ±inf in the reference.
        inf_rate_current: Share of ±inf in the current sample.
        out_of_range_reference: Numeric: share of the reference beyond its robust bounds (its far-out values
            and ±inf; 0 when nothing is far out);
            categorical: share in the unseen bucket (categories beyond ``max_categories``).
        out_of_range_current: Same for the current sample — values beyond the training bounds or unseen
            categories.
        bin_labels: Label of every compared bin.
        bin_edges: Inner numeric edges, when the bins are intervals.
        reference_proportions: Reference share per bin (unsmoothed), for the histogram.
        current_proportions: Current share per bin (unsmoothed).
        notes: Anything the numbers alone do not say (e.g. an empty sample).
    """

    name: str
    kind: str
    binning: str
    psi: float
    kl: float
    js: float
    js_divergence: float
    js_base2: float
    severity: str
    drifted: bool
    n_reference: int
    n_current: int
    missing_rate_reference: float
    missing_rate_current: float
    inf_rate_reference: float
    inf_rate_current: float
    out_of_range_reference: float
    out_of_range_current: float
    bin_labels: list[str]
    bin_edges: list[float] | None
    reference_proportions: list[float]
    current_proportions: list[float]
    notes: list[str] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        *,
        name: str,
        kind: str,
        binning: str,
        config: DriftConfig,
        p: npt.NDArray[np.float64],
        q: npt.NDArray[np.float64],
        p_scored: npt.NDArray[np.float64],
        q_scored: npt.NDArray[np.float64],
        rates: dict[str, float],
        n_reference: int,
        n_current: int,
        labels: list[str],
        edges: list[float] | None,
        notes: list[str] | None = None,
    ) -> FeatureDrift:
        """Score two binned samples and apply the severity bands.

        Args:
            name: Column name.
            kind: Feature kind.
            binning: Binning mode.
            config: Severity bands.
            p: Raw reference proportions (JS and the histogram).
            q: Raw current proportions.
            p_scored: Reference proportions used for PSI and KL (smoothed or zero-filled).
            q_scored: Current proportions used for PSI and KL.
            rates: ``missing_rate_reference`` … ``out_of_range_current`` values.
            n_reference: Reference rows.
            n_current: Current rows.
            labels: Bin labels.
            edges: Inner edges or None.
            notes: Extra notes.

        Returns:
            The feature result; scores are NaN when either sample is empty.
        """
        notes = list(notes or [])
        if p.size == 0 or q.size == 0 or p.sum() <= 0 or q.sum() <= 0:
            psi = kl = js = jsd = js2 = math.nan
        else:
            psi = metrics.psi(p_scored, q_scored)
            kl = metrics.kl_divergence(p_scored, q_scored)
            jsd = metrics.js_divergence(p, q)
            js = math.sqrt(jsd)
            js2 = math.sqrt(jsd / math.log(2))  # jensenshannon(p, q, base=2), without a second pass
        score = {"psi": psi, "js": js, "kl": kl}[config.severity_metric]
        severity = config.severity(score)
        return cls(
            name=name, kind=kind, binning=binning, psi=psi, kl=kl, js=js, js_divergence=jsd, js_base2=js2,
            severity=severity, drifted=config.is_drifted(severity), n_reference=n_reference,
            n_current=n_current, bin_labels=labels, bin_edges=edges,
            reference_proportions=[float(v) for v in p], current_proportions=[float(v) for v in q],
            notes=notes, **rates,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; non-finite floats become null."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, float):
                out[key] = _json_float(value)
            elif isinstance(value, list) and value and isinstance(value[0], float):
                out[key] = [_json_float(v) for v in value]
            else:
                out[key] = value
        return out


@dataclass
class DriftReport:
    """Everything one comparison found.

    Attributes:
        features: Per-column results, in column order (the prediction column included, if compared).
        decision: The dataset-level verdict.
        binning: ``"reference"`` or ``"evidently"``.
        n_reference: Reference rows (training rows for a profile).
        n_current: Current rows.
        config: The thresholds used.
        skipped: Columns left out and why (e.g. datetime columns when comparing all shared columns).
    """

    features: dict[str, FeatureDrift]
    decision: DriftDecision
    binning: str
    n_reference: int
    n_current: int
    config: DriftConfig
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict — the shape ``loopline drift --format json`` prints."""
        cfg = self.config
        return {
            "binning": self.binning,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "decision": self.decision.to_dict(),
            "skipped": dict(self.skipped),
            "config": {
                "psi_bands": list(cfg.psi_bands), "drift_severity": cfg.drift_severity,
                "severity_metric": cfg.severity_metric, "drift_share": cfg.drift_share,
                "key_features": cfg.key_features, "prediction_column": cfg.prediction_column,
                "performance_metric": cfg.performance_metric, "max_performance_drop": cfg.max_performance_drop,
                "smoothing": cfg.smoothing,
            },
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Serialise :meth:`to_dict` as strict JSON."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_html(self, title: str = "Loopline drift report") -> str:
        """Render a self-contained HTML page (inline CSS and SVG, no script, no network)."""
        from loopline.drift.html import render_html

        return render_html(self, title=title)

    def to_table(self) -> str:
        """Plain-text table of the per-feature metrics and the decision, for a terminal."""
        header = ("feature", "kind", "psi", "kl", "js", "miss ref", "miss cur", "out cur", "severity")
        rows = [header]
        for f in self.features.values():
            rows.append((
                f.name, f.kind, _num(f.psi), _num(f.kl), _num(f.js), _pct(f.missing_rate_reference),
                _pct(f.missing_rate_current), _pct(f.out_of_range_current), f.severity + (" *" if f.drifted else ""),
            ))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        d = self.decision
        lines.append("")
        lines.append(f"DRIFTED: {'yes' if d.drifted else 'no'}  (binning={self.binning}, "
                     f"{self.n_reference} reference rows, {self.n_current} current rows)")
        lines.extend(f"  - {r}" for r in d.reasons)
        lines.extend(f"  ! {s}" for s in d.signals)
        lines.extend(f"  skipped {k}: {v}" for k, v in self.skipped.items())
        return "\n".join(lines)


def _num(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"
