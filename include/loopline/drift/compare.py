"""Entry points: :func:`compare` (a stored profile against a batch) and :func:`compare_frames` (two frames)."""

from __future__ import annotations

import pandas as pd

from loopline.drift.binning import check_supported, resolve_kind
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

    A profiled feature the batch lacks (when ``columns`` is None), or whose values cannot be binned as in
    training (a numeric feature that now holds text, a datetime), is not compared: it is listed in
    ``DriftReport.skipped`` and ``DriftDecision.not_compared`` and counts as drifted (see
    :func:`loopline.drift.decision.decide`).

    Args:
        profile: The reference profile logged with the model version.
        current: The batch to check.
        config: Thresholds; :class:`DriftConfig` defaults when None.
        columns: Subset of profiled columns to compare; all profiled columns when None.
        performance: Concept-drift verdict from :func:`loopline.drift.performance_decay`, once labels arrived.

    Returns:
        The report.

    Raises:
        DriftInputError: The batch or the profile has no rows; no profiled column is in the batch; a column
            named in ``columns`` is absent from ``current`` or not in the profile.
    """
    cfg = config or DriftConfig()
    _check_rows(profile.n_rows, "reference profile", len(current))
    names = list(profile.features) if columns is None else list(columns)
    not_profiled = [c for c in names if c not in profile.features]
    if not_profiled:
        raise DriftInputError(
            f"columns {not_profiled} are not in the reference profile (profiled: {list(profile.features)}); "
            "re-fit the profile with them or drop them from columns."
        )
    absent = [c for c in names if c not in current.columns]
    if absent and (columns is not None or len(absent) == len(names)):
        raise DriftInputError(
            f"columns {absent} are in the reference profile but not in the current data "
            f"(profiled: {list(profile.features)}; current: {list(current.columns)}); check the feature-set "
            "version of the batch" + (", or pass columns=[...] without them." if columns is not None else ".")
        )
    lost = {c: ABSENT for c in absent}
    return _compare_profile(profile, current, cfg, [c for c in names if c not in lost], lost, performance)


ABSENT = "in the reference, absent from the current data"


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

    With ``columns`` None, every reference column is a feature: those the current frame lacks, or whose dtype
    there cannot be compared with the reference's, are listed in ``DriftReport.skipped`` and counted as drifted
    (:func:`loopline.drift.decision.decide`); datetime-like reference columns are skipped and not counted.

    Args:
        reference: Reference (training) data.
        current: Current (scoring) data.
        binning: ``"reference"`` — fit a :class:`ReferenceProfile` on ``reference`` and :func:`compare`;
            ``"evidently"`` — Evidently 0.7's binning and scores (see :mod:`loopline.drift.evidently_mode`).
        columns: Columns to compare; when None, every reference column (see above).
        config: Thresholds.
        feature_kinds: ``{"col": "numeric" | "categorical"}`` overrides of the inferred kinds.
        n_bins: Equal-width bins for numeric features in ``reference`` mode.
        performance: Optional concept-drift verdict.

    Returns:
        The report.

    Raises:
        DriftInputError: Unknown binning, either frame without rows, no column in common, a named column
            missing from either frame, or an unsupported reference dtype (a datetime column named explicitly).
    """
    if binning not in BINNINGS:
        raise DriftInputError(f"binning must be one of {BINNINGS}, got {binning!r}")
    cfg = config or DriftConfig()
    _check_rows(len(reference), "reference data", len(current))
    skipped: dict[str, str] = {}
    lost: dict[str, str] = {}
    if columns is None:
        shared = [c for c in reference.columns if c in set(current.columns)]
        if not shared:
            raise DriftInputError(
                f"the reference and current data have no column in common (reference: {list(reference.columns)}; "
                f"current: {list(current.columns)}); check that both files hold the same feature set."
            )
        names = []
        for c in reference.columns:
            if _is_temporal(reference[c]):
                skipped[str(c)] = f"datetime-like dtype {reference[c].dtype}; drift needs numeric or categorical"
            elif c not in shared:
                lost[str(c)] = ABSENT
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
        report = _compare_profile(profile, current, cfg, names, lost, performance)
    else:
        features: dict[str, FeatureDrift] = {}
        for name in names:
            kind = resolve_kind(reference[name], name, feature_kinds)
            try:
                resolve_kind(current[name], name, feature_kinds)  # a datetime current column
                features[name] = _evidently_feature(reference[name], current[name], name, kind, cfg)
            except DriftInputError as exc:
                lost[name] = _changed(reference[name].dtype, current[name], exc)
        report = DriftReport(
            features=features, decision=decide(features, cfg, performance, not_compared=lost),
            binning="evidently", n_reference=len(reference), n_current=len(current), config=cfg,
            skipped=_counted(lost),
        )
    report.skipped = {**skipped, **report.skipped}
    return report


def _compare_profile(
    profile: ReferenceProfile,
    current: pd.DataFrame,
    cfg: DriftConfig,
    names: list[str],
    lost: dict[str, str],
    performance: PerformanceDecay | None,
) -> DriftReport:
    """Bin and score ``names``; features in ``lost`` and those that cannot be binned are not compared."""
    lost = dict(lost)
    features: dict[str, FeatureDrift] = {}
    for name in names:
        try:
            check_supported(current[name], name)
            features[name] = _reference_feature(profile.features[name], current[name], cfg)
        except DriftInputError as exc:
            lost[name] = _changed(profile.features[name].dtype, current[name], exc)
    return DriftReport(
        features=features, decision=decide(features, cfg, performance, not_compared=lost), binning="reference",
        n_reference=profile.n_rows, n_current=len(current), config=cfg, skipped=_counted(lost),
    )


def _check_rows(n_reference: int, what: str, n_current: int) -> None:
    if n_reference == 0:
        raise DriftInputError(f"the {what} has no rows: there is nothing to compare against.")
    if n_current == 0:
        raise DriftInputError(
            "the current data has no rows: there is nothing to compare (an empty batch is no evidence of "
            "'no drift'); skip the check for this batch or check what produced it."
        )


def _changed(reference_dtype: object, current: pd.Series, exc: DriftInputError) -> str:
    return f"reference dtype {reference_dtype}, current dtype {current.dtype}: {exc}"


def _counted(lost: dict[str, str]) -> dict[str, str]:
    return {name: f"{reason} — counted as drifted" for name, reason in lost.items()}


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
    if ref.total and ref.missing == ref.total:
        notes.append("the reference has no value (all missing): only the missing rate is compared")
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
