"""Drift engine: reference profiles, PSI / KL / JS per feature, the retraining decision and its report.

Airflow-free. The production path is::

    profile = ReferenceProfile.fit(train_df, n_bins=10)          # at training time, logged with the model
    report = compare(ReferenceProfile.from_json(text), batch)   # each day, bins only the day's rows
    report.decision.drifted, report.to_json(), report.to_html()

``compare_frames(ref_df, cur_df, binning="evidently")`` reproduces Evidently 0.7's ``psi``, ``kl_div`` and
``jensenshannon`` scores for cross-checking.
"""

from __future__ import annotations

from loopline.drift.compare import compare, compare_frames
from loopline.drift.config import DriftConfig, DriftConfigError, DriftInputError
from loopline.drift.decision import DriftDecision, PerformanceDecay, performance_decay, score_metric
from loopline.drift.profile import FeatureProfile, ReferenceProfile
from loopline.drift.report import DriftReport, FeatureDrift

__all__ = [
    "DriftConfig",
    "DriftConfigError",
    "DriftDecision",
    "DriftInputError",
    "DriftReport",
    "FeatureDrift",
    "FeatureProfile",
    "PerformanceDecay",
    "ReferenceProfile",
    "compare",
    "compare_frames",
    "performance_decay",
    "score_metric",
]
