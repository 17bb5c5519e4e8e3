"""Entry points: :func:`compare` (a stored profile against a batch) and :func:`compare_frames` (two frames)."""

from __future__ import annotations

import pandas as pd

from loopline.drift.binning import resolve_kind
from loopline.drift.config import DriftConfig, DriftInputError
from loopline.drift.decision import PerformanceDecay, decide
from loopline.drift.evidently_mode import bin_evidently
from loopline.drift.metrics import smooth
from loopline.drift.profile import FeatureProfile, ReferenceProfile, _is_temporal
from loopline.drift.report import DriftReport, FeatureDrift

BINNINGS = ("reference", "evidently")


def compare(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    config: DriftConfig | None = None,
    columns: list[str] | None = None,
    performance: PerformanceDecay | None = None,
) -> DriftReport:
    """Compare a batch against a reference profile (``reference`` binning, the production path).

    Only the batch is binned, with the profile's fixed edges/categories (one vectorised pass per column).
    Missing values form their own bin; PSI and KL use proportions smoothed with ``config.smoothing``
    (:func:`loopline.drift.metrics.smooth`), JS the raw ones.

    Args:
        profile: The reference profile logged with the model version.
        current: The batch to check.
        config: Thresholds; :class:`DriftConfig` defaults when None.
        columns: Subset of profiled columns to compare; all profiled columns when None.
        performance: Concept-drift verdict from :func:`loopline.drift.performance_decay`, once labels arrived.

    Returns:
        The report.

    Raises:
        DriftInputError: A compared column is absent from ``current`` or not in the profile.
    """
    cfg = config or DriftConfig()
    names = list(profile.features) if columns is None else list(columns)
    not_profiled = [c for c in names if c not in profile.features]
    if not_profiled:
        raise DriftInputError(
            f"columns {not_profiled} are not in the reference profile (profiled: {list(profile.features)}); "
            "re-fit the profile with them or drop them from columns."
        )
    absent = [c for c in names if c not in current.columns]
    if absent:
        raise DriftInputError(
            f"columns {absent} are in the reference profile but not in the current data; check the feature-set "
            "version of the batch, or pass columns=[...] without them."
        )
    features = {name: _reference_feature(profile.features[name], current[name], cfg) for name in names}
    return DriftReport(
        features=features, decision=decide(features, cfg, performance), binning="reference",
        n_reference=profile.n_rows, n_current=len(current), config=cfg,
    )


def compare_frames(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    binning: str = "reference",
    columns: list[str] | None = None,
    config: DriftConfig | None = None,
    feature_kinds: dict[str, str] | None = None,
    n_bins: int = 10,
    performance: PerformanceDecay | None = None,
) -> DriftReport:
    """Compare two frames column by column.

    Args:
        reference: Reference (training) data.
        current: Current (scoring) data.
        binning: ``"reference"`` — fit a :class:`ReferenceProfile` on ``reference`` and :func:`compare`;
            ``"evidently"`` — Evidently 0.7's binning and scores (see :mod:`loopline.drift.evidently_mode`).
        columns: Columns to compare; when None, every column both frames share, datetime-like columns
            skipped (listed in ``DriftReport.skipped``).
        config: Thresholds.
        feature_kinds: ``{"col": "numeric" | "categorical"}`` overrides of the inferred kinds.
        n_bins: Equal-width bins for numeric features in ``reference`` mode.
        performance: Optional concept-drift verdict.

    Returns:
        The report.

    Raises:
        DriftInputError: Unknown binning, a column missing from either frame, or an unsupported dtype
            (a datetime column named explicitly).
    """
    if binning not in BINNINGS:
        raise DriftInputError(f"binning must be one of {BINNINGS}, got {binning!r}")
    cfg = config or DriftConfig()
    skipped: dict[str, str] = {}
    if columns is None:
        shared = [c for c in reference.columns if c in set(current.columns)]
        names = []
        for c in shared:
            if _is_temporal(reference[c]) or _is_temporal(current[c]):
                skipped[str(c)] = f"datetime-like dtype {reference[c].dtype}; drift needs numeric or categorical"
            else:
                names.append(str(c))
    else:
        names = list(columns)
        for where, frame in (("reference", reference), ("current", current)):
            absent = [c for c in names if c not in frame.columns]
            if absent:
                raise DriftInputError(
                    f"columns {absent} are not in the {where} data; available: {list(frame.columns)}"
                )
    if binning == "reference":
        profile = ReferenceProfile.fit(reference, names, n_bins=n_bins, feature_kinds=feature_kinds)
        report = compare(profile, current, config=cfg, columns=names, performance=performance)
        report.skipped = skipped
        return report
    features: dict[str, FeatureDrift] = {}
    for name in names:
        kind = resolve_kind(reference[name], name, feature_kinds)
        resolve_kind(current[name], name, feature_kinds)  # rejects a datetime current column too
        features[name] = _evidently_feature(reference[name], current[name], name, kind, cfg)
    return DriftReport(
        features=features, decision=decide(features, cfg, performance), binning="evidently",
        n_reference=len(reference), n_current=len(current), config=cfg, skipped=skipped,
    )


def _rate(count: int, total: int) -> float:
    return count / total if total else float("nan")


def _reference_feature(fp: FeatureProfile, series: pd.Series, cfg: DriftConfig) -> FeatureDrift:
    ref = fp.reference()
    cur = fp.bin(series)
    p, q = ref.proportions(), cur.proportions()
    notes = []
    if cur.total == 0:
        notes.append("current batch has no rows: scores are undefined")
    if ref.total == 0:
        notes.append("reference had no rows: scores are undefined")
    crowded = _crowded_bin_share(fp)
    if crowded is not None:
        notes.append(
            f"{crowded:.1%} of the reference's in-range values share one of {fp.n_inner} inner bins: a shift "
            "inside that bin cannot show (bounds stretched by extreme values in a profile fitted before the "
            "robust bounds?); re-fit the profile"
        )
    return FeatureDrift.build(
        name=fp.name, kind=fp.kind, binning="reference", config=cfg, p=p, q=q,
        p_scored=smooth(p, cfg.smoothing), q_scored=smooth(q, cfg.smoothing),
        rates={
            "missing_rate_reference": _rate(ref.missing, ref.total),
            "missing_rate_current": _rate(cur.missing, cur.total),
            "inf_rate_reference": _rate(ref.inf, ref.total),
            "inf_rate_current": _rate(cur.inf, cur.total),
            "out_of_range_reference": _rate(ref.outside, ref.total),
            "out_of_range_current": _rate(cur.outside, cur.total),
        },
        n_reference=ref.total, n_current=cur.total, labels=fp.labels, edges=fp.edges, notes=notes,
    )


def _crowded_bin_share(fp: FeatureProfile) -> float | None:
    """Share of the in-range reference values in the fullest inner bin, when ≥ 99 % of ≥ 3 bins."""
    if fp.kind != "numeric" or (fp.n_inner or 0) < 3:
        return None
    inner = fp.counts[1:-1]
    total = sum(inner)
    share = max(inner) / total if total else 0.0
    return share if share >= 0.99 else None


def _evidently_feature(
    reference: pd.Series, current: pd.Series, name: str, kind: str, cfg: DriftConfig
) -> FeatureDrift:
    b = bin_evidently(reference, current, kind, name)
    notes = []
    for side, size in (("reference", b.ref_size), ("current", b.cur_size)):
        if size == 0:
            notes.append(
                f"{side} sample is empty after dropping NaN and ±inf: scores are undefined "
                "(Evidently raises here)"
            )
    n_ref, n_cur = len(reference), len(current)
    return FeatureDrift.build(
        name=name, kind=kind, binning="evidently", config=cfg, p=b.reference, q=b.current,
        p_scored=b.reference_filled, q_scored=b.current_filled,
        rates={
            "missing_rate_reference": _rate(b.ref_missing, n_ref),
            "missing_rate_current": _rate(b.cur_missing, n_cur),
            "inf_rate_reference": _rate(b.ref_inf, n_ref),
            "inf_rate_current": _rate(b.cur_inf, n_cur),
            "out_of_range_reference": 0.0 if n_ref else float("nan"),
            "out_of_range_current": _rate(b.outside, n_cur),
        },
        n_reference=n_ref, n_current=n_cur, labels=b.labels, edges=b.edges, notes=notes,
    )
