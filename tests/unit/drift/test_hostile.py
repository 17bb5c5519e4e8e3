"""Inputs a hostile user would try: each compares meaningfully, is reported as not compared, or is an error.

Never a silent "no drift": a column that could not be compared counts as drifted in the decision.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from loopline.drift import DriftConfig, DriftInputError, ReferenceProfile, compare, compare_frames

pytestmark = pytest.mark.unit

N = 2_000
_rng = np.random.default_rng(7)
NORMAL = _rng.normal(size=N)
NORMAL_2 = _rng.normal(size=N)
NAN = np.full(N, np.nan)

DRIFTED, NOT_COMPARED, NONE = "drifted", "not compared", "none"

# name: (reference column, current column, outcome in reference mode, outcome in evidently mode)
CASES: dict[str, tuple[object, object, str, str]] = {
    "all-NaN current": (NORMAL, NAN, DRIFTED, NOT_COMPARED),  # reference: the missing bin holds everything
    "all-NaN reference": (NAN, NORMAL_2, DRIFTED, NOT_COMPARED),
    "both all-NaN": (NAN, NAN, NONE, NOT_COMPARED),  # reference mode: the same missing rate, with a note
    "numeric became text": (NORMAL, np.array(["a", "b"] * (N // 2), dtype=object), NOT_COMPARED, NOT_COMPARED),
    "numeric became datetime": (NORMAL, pd.date_range("2024-01-01", periods=N, freq="min"),
                                NOT_COMPARED, NOT_COMPARED),
    "numeric became numeric text": (NORMAL, NORMAL_2.astype(str).astype(object), NONE, NONE),
    "text became numeric": (np.array(["a", "b"] * (N // 2), dtype=object), NORMAL_2, DRIFTED, DRIFTED),
    "20% +inf in current": (NORMAL, np.where(np.arange(N) % 5 == 0, np.inf, NORMAL_2), DRIFTED, NONE),
    "±inf in current": (NORMAL, np.where(np.arange(N) % 2 == 0, np.inf, -np.inf), DRIFTED, NOT_COMPARED),
    "±inf and NaN only in current": (NORMAL, np.where(np.arange(N) % 2 == 0, np.inf, np.nan),
                                     DRIFTED, NOT_COMPARED),
    "single value in reference, moved": (np.full(N, 5.0), NORMAL_2 + 5, DRIFTED, DRIFTED),
    "single value in reference, same": (np.full(N, 5.0), np.full(N, 5.0), NONE, NONE),
    "single int value in reference, moved": (np.full(N, 3), np.full(N, 4), DRIFTED, DRIFTED),
    "single value and NaN in reference": (np.where(np.arange(N) % 2 == 0, 1.0, np.nan), NORMAL_2,
                                          DRIFTED, DRIFTED),
}


@pytest.mark.parametrize("binning", ["reference", "evidently"])
@pytest.mark.parametrize("case", list(CASES))
def test_hostile_column(case: str, binning: str) -> None:
    ref_col, cur_col, expect_reference, expect_evidently = CASES[case]
    expected = expect_reference if binning == "reference" else expect_evidently
    ref = pd.DataFrame({"x": ref_col})
    cur = pd.DataFrame({"x": cur_col})
    report = compare_frames(ref, cur, binning=binning)
    d = report.decision
    if expected == NOT_COMPARED:
        assert d.not_compared.get("x")
        assert "x" in report.skipped or report.features["x"].severity == "unknown"
        assert d.drifted and d.share_drifted == 1.0
        assert any("not compared" in r for r in d.reasons)
    elif expected == DRIFTED:
        f = report.features["x"]
        assert f.severity == "major" and np.isfinite(f.psi), (f.psi, f.notes)
        assert d.drifted
    else:
        f = report.features["x"]
        assert f.severity == "none" and not d.drifted
        if case == "both all-NaN":
            assert any("no value" in n for n in f.notes)  # said, not silent
        if case.startswith("20%"):
            assert any("±inf" in s for s in d.signals)  # evidently mode drops them, and says so
    report.to_json()  # always strict JSON
    report.to_html()
    report.to_table()


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_column_against_a_stored_profile(case: str) -> None:
    """The production path (a profile from JSON) reaches the same outcome as comparing the frames."""
    ref_col, cur_col, expected, _ = CASES[case]
    profile = ReferenceProfile.from_json(ReferenceProfile.fit(pd.DataFrame({"x": ref_col})).to_json())
    report = compare(profile, pd.DataFrame({"x": cur_col}))
    outcome = (NOT_COMPARED if "x" in report.decision.not_compared
               else DRIFTED if report.features["x"].drifted else NONE)
    assert outcome == expected


@pytest.mark.parametrize("binning", ["reference", "evidently"])
@pytest.mark.parametrize(
    ("reference", "current", "match"),
    [
        (pd.DataFrame({"a": NORMAL}), pd.DataFrame({"b": NORMAL}), r"no column in common.*\['a'\].*\['b'\]"),
        (pd.DataFrame({"a": NORMAL}), pd.DataFrame(index=range(N)), r"no column in common"),
        (pd.DataFrame({"a": NORMAL}), pd.DataFrame({"a": []}), r"current data has no rows"),
        (pd.DataFrame({"a": NORMAL}), pd.DataFrame(), r"current data has no rows"),
        (pd.DataFrame({"a": []}), pd.DataFrame({"a": NORMAL}), r"reference data has no rows"),
    ],
)
def test_frames_that_cannot_be_compared_are_errors(reference: pd.DataFrame, current: pd.DataFrame, match: str,
                                                   binning: str) -> None:
    with pytest.raises(DriftInputError, match=match):
        compare_frames(reference, current, binning=binning)


def test_profile_with_no_column_in_the_batch_is_an_error() -> None:
    profile = ReferenceProfile.fit(pd.DataFrame({"a": NORMAL, "b": NORMAL}))
    with pytest.raises(DriftInputError, match=r"\['a', 'b'\].*current: \['z'\]"):
        compare(profile, pd.DataFrame({"z": NORMAL}))


def _frames(seed: int, n_features: int, n_drifted: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({f"f{i}": rng.normal(size=1_000) for i in range(n_features)})
    cur = pd.DataFrame({f"f{i}": rng.normal(3.0 if i < n_drifted else 0.0, size=1_000) for i in range(n_features)})
    return ref, cur


@pytest.mark.parametrize("binning", ["reference", "evidently"])
@pytest.mark.parametrize(("n_features", "n_drifted"), [(2, 1), (3, 2), (4, 2), (5, 3)])
@pytest.mark.parametrize("key_features", [None, {"f0": 3.0, "f1": 1.0}])
def test_dropping_columns_from_the_batch_never_flips_to_no_drift(
    binning: str, n_features: int, n_drifted: int, key_features: dict[str, float] | None
) -> None:
    ref, cur = _frames(n_features * 10 + n_drifted, n_features, n_drifted)
    cfg = DriftConfig(key_features=key_features)
    full = compare_frames(ref, cur, binning=binning, config=cfg).decision
    assert full.drifted  # the fixtures drift at least half the features
    profile = ReferenceProfile.fit(ref)
    for k in range(1, n_features):
        for dropped in itertools.combinations(list(cur.columns), k):
            partial = cur.drop(columns=list(dropped))
            for d in (compare_frames(ref, partial, binning=binning, config=cfg).decision,
                      compare(profile, partial, config=cfg).decision):
                assert d.drifted, (dropped, d.reasons)
                assert d.share_drifted >= full.share_drifted
                assert d.n_features == n_features
                assert set(d.not_compared) == set(dropped)
                if key_features is not None and full.key_feature_share is not None:
                    assert d.key_feature_share is not None and d.key_feature_share >= full.key_feature_share


@pytest.mark.parametrize("binning", ["reference", "evidently"])
def test_prediction_column_not_compared_counts_as_prediction_drift(binning: str) -> None:
    ref = pd.DataFrame({"x": NORMAL, "score": np.clip(NORMAL_2 / 10 + 0.5, 0, 1)})
    cur = pd.DataFrame({"x": NORMAL_2})
    d = compare_frames(ref, cur, binning=binning).decision
    assert d.drifted and d.prediction_drift is not None and d.prediction_drift["drifted"]
    assert d.n_features == 1 and d.share_drifted == 0.0  # the score is judged apart from the features
    quiet = compare_frames(ref, cur, binning=binning, config=DriftConfig(prediction_drift_triggers=False))
    assert not quiet.decision.drifted and "score" in quiet.decision.not_compared
