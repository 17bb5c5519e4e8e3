"""Profiles, both binning modes, the decision and the edge cases of issue 3."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from loopline.drift import (
    DriftConfig,
    DriftConfigError,
    DriftInputError,
    ReferenceProfile,
    compare,
    compare_frames,
    performance_decay,
)
from loopline.drift.evidently_mode import fill_zeroes, sturges_edges
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

pytestmark = pytest.mark.unit


@pytest.fixture
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(42)
    n = 20_000

    def make(shift: float, cats: list[str]) -> pd.DataFrame:
        return pd.DataFrame({
            "num": rng.normal(shift, 1.0, n),
            "small_int": rng.integers(0, 4, n),
            "cat": rng.choice(cats, n),
            "flag": rng.random(n) < 0.3 + shift / 10,
            "score": rng.beta(2, 5 + shift, n),
        })

    return make(0.0, ["a", "b", "c"]), make(1.0, ["a", "b", "d"])


@pytest.mark.parametrize("binning", ["reference", "evidently"])
def test_identical_samples_score_zero(frames: tuple[pd.DataFrame, pd.DataFrame], binning: str) -> None:
    ref, _ = frames
    report = compare_frames(ref, ref.copy(), binning=binning)
    for f in report.features.values():
        assert (f.psi, f.kl, f.js, f.js_base2) == (0.0, 0.0, 0.0, 0.0)
        assert f.severity == "none"
    assert report.decision.drifted is False


@pytest.mark.parametrize("binning", ["reference", "evidently"])
def test_row_order_is_irrelevant(frames: tuple[pd.DataFrame, pd.DataFrame], binning: str) -> None:
    ref, cur = frames
    a = compare_frames(ref, cur, binning=binning)
    b = compare_frames(ref.sample(frac=1, random_state=1), cur.sample(frac=1, random_state=2), binning=binning)
    for name in a.features:
        assert a.features[name].psi == pytest.approx(b.features[name].psi, rel=1e-12, abs=1e-15)
        assert a.features[name].js == pytest.approx(b.features[name].js, rel=1e-12, abs=1e-15)


def test_shift_is_detected_and_explained(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = frames
    report = compare(ReferenceProfile.fit(ref), cur)
    d = report.decision
    assert d.drifted
    assert report.features["num"].severity == "major"
    assert report.features["cat"].out_of_range_current == pytest.approx((cur["cat"] == "d").mean())
    assert d.top_features[0][1] == max(f.psi for n, f in report.features.items() if n != "score")
    assert any("features drifted" in r for r in d.reasons)
    assert d.prediction_drift is not None and d.prediction_drift["column"] == "score"
    assert "score" not in d.drifted_features  # the prediction is judged apart from the features


def test_reference_mode_metrics_equal_scipy_on_its_histograms(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = frames
    f = compare_frames(ref, cur, columns=["num"]).features["num"]
    p, q = np.array(f.reference_proportions), np.array(f.current_proportions)
    assert f.js == pytest.approx(jensenshannon(p, q), abs=1e-12)
    eps = DriftConfig().smoothing
    ps, qs = (p + eps) / (1 + p.size * eps), (q + eps) / (1 + q.size * eps)
    assert f.kl == pytest.approx(entropy(ps, qs), abs=1e-12)
    assert f.psi == pytest.approx(float(np.sum((ps - qs) * np.log(ps / qs))), abs=1e-12)


def test_profile_json_round_trip_gives_same_report(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = frames
    profile = ReferenceProfile.fit(ref, validation_metrics={"roc_auc": 0.8})
    text = profile.to_json()
    data = json.loads(text)
    assert data["schema_version"] == 1
    assert len(text) < 5_000  # small: bins and counts only, never the rows
    loaded = ReferenceProfile.from_json(text)
    assert loaded.validation_metrics == {"roc_auc": 0.8}
    assert compare(loaded, cur).to_dict() == compare(profile, cur).to_dict()


def test_profile_rejects_newer_schema() -> None:
    profile = ReferenceProfile.fit(pd.DataFrame({"x": [1.0, 2.0]}))
    data = json.loads(profile.to_json())
    data["schema_version"] = 99
    with pytest.raises(DriftInputError, match="upgrade"):
        ReferenceProfile.from_json(json.dumps(data))


def test_constant_column() -> None:
    ref = pd.DataFrame({"c": np.full(1000, 5.0)})
    same = compare_frames(ref, ref.copy())
    assert same.features["c"].psi == 0.0
    moved = compare_frames(ref, pd.DataFrame({"c": np.full(1000, 5.5)}))
    assert moved.features["c"].severity == "major"
    assert moved.features["c"].out_of_range_current == 1.0


@pytest.mark.parametrize("binning", ["reference", "evidently"])
def test_all_nan_current_never_crashes_and_is_visible(binning: str) -> None:
    ref = pd.DataFrame({"x": np.random.default_rng(0).normal(size=500)})
    cur = pd.DataFrame({"x": np.full(300, np.nan)})
    f = compare_frames(ref, cur, binning=binning).features["x"]
    assert f.missing_rate_current == 1.0
    if binning == "reference":
        assert f.severity == "major"  # the missing bin carries the whole batch
    else:
        assert f.severity == "unknown" and math.isnan(f.psi) and f.notes


def test_all_nan_reference_column() -> None:
    ref = pd.DataFrame({"x": np.full(100, np.nan)})
    cur = pd.DataFrame({"x": np.arange(100.0)})
    f = compare_frames(ref, cur).features["x"]
    assert f.missing_rate_reference == 1.0 and f.severity == "major"


@pytest.mark.parametrize("binning", ["reference", "evidently"])
def test_empty_current_is_an_error_not_no_drift(binning: str, frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, _ = frames
    with pytest.raises(DriftInputError, match="current data has no rows"):
        compare_frames(ref, ref.iloc[:0], binning=binning)
    with pytest.raises(DriftInputError, match="reference data has no rows"):
        compare_frames(ref.iloc[:0], ref, binning=binning)
    with pytest.raises(DriftInputError, match="current data has no rows"):
        compare(ReferenceProfile.fit(ref), ref.iloc[:0])


def test_one_row_current(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = frames
    for binning in ("reference", "evidently"):
        f = compare_frames(ref, cur.iloc[:1], binning=binning).features["num"]
        assert math.isfinite(f.psi) and f.psi > 0


def test_huge_outliers_go_to_the_overflow_bin() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=5000)})
    cur_values = rng.normal(size=5000)
    cur_values[:500] = 1e300
    cur_values[500:510] = np.inf
    f = compare_frames(ref, pd.DataFrame({"x": cur_values})).features["x"]
    above = np.count_nonzero(cur_values > ref["x"].max()) / 5000
    below = np.count_nonzero(cur_values < ref["x"].min()) / 5000
    assert above >= 0.102
    assert f.current_proportions[-2] == pytest.approx(above)  # overflow bin (missing is last)
    assert f.out_of_range_current == pytest.approx(above + below)
    assert f.inf_rate_current == pytest.approx(0.002)
    assert f.severity == "major"


def test_integer_column_with_few_values_gets_one_bin_per_value() -> None:
    ref = pd.DataFrame({"k": np.array([0, 1, 1, 2, 2, 2])})
    profile = ReferenceProfile.fit(ref)
    fp = profile.features["k"]
    assert fp.n_inner == 3 and fp.counts == [0, 1, 2, 3, 0]
    f = compare(profile, pd.DataFrame({"k": np.array([0, 0, 1, 2, 3])})).features["k"]
    assert f.out_of_range_current == pytest.approx(0.2)


def test_unseen_categories_and_bool() -> None:
    ref = pd.DataFrame({"c": ["a", "b"] * 50, "b": [True, False] * 50})
    cur = pd.DataFrame({"c": ["a", "zz"] * 50, "b": [True] * 100})
    report = compare_frames(ref, cur)
    assert report.features["c"].out_of_range_current == 0.5
    assert report.features["c"].bin_labels[-2:] == ["(unseen)", "(missing)"]
    assert report.features["b"].kind == "categorical"
    assert report.features["b"].severity == "major"


def test_datetime_rejected_when_named_and_skipped_otherwise() -> None:
    ref = pd.DataFrame({"t": pd.date_range("2024-01-01", periods=10), "x": np.arange(10.0)})
    with pytest.raises(DriftInputError, match=r"'t'.*numeric or categorical"):
        compare_frames(ref, ref, columns=["t"])
    with pytest.raises(DriftInputError, match="'t'"):
        ReferenceProfile.fit(ref, ["t"])
    report = compare_frames(ref, ref)
    assert list(report.features) == ["x"] and "t" in report.skipped


def test_missing_column_names_it_and_what_to_do() -> None:
    profile = ReferenceProfile.fit(pd.DataFrame({"x": [1.0, 2.0], "y": [1.0, 2.0]}))
    with pytest.raises(DriftInputError, match=r"\['y'\].*columns="):
        compare(profile, pd.DataFrame({"x": [1.0]}), columns=["x", "y"])  # asked for by name: an error
    report = compare(profile, pd.DataFrame({"x": [1.0, 2.0]}))  # all profiled features: reported, counted
    assert list(report.features) == ["x"]
    assert "absent from the current data" in report.skipped["y"]
    assert report.decision.not_compared == {"y": "in the reference, absent from the current data"}
    assert report.decision.drifted and report.decision.share_drifted == 0.5


def test_bands_and_env_config(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    cfg = DriftConfig.from_env({"LOOPLINE_PSI_BANDS": "0.1,0.25", "LOOPLINE_DRIFT_SHARE": "0.3",
                                "LOOPLINE_KEY_FEATURES": "num=2,cat"})
    assert cfg.psi_bands == (0.1, 0.25) and cfg.drift_share == 0.3
    assert cfg.key_features == {"num": 2.0, "cat": 1.0}
    assert [cfg.severity(v) for v in (0.05, 0.1, 0.2, 0.25)] == ["none", "moderate", "moderate", "major"]
    with pytest.raises(ValueError, match="LOOPLINE_PSI_BANDS"):
        DriftConfig.from_env({"LOOPLINE_PSI_BANDS": "high"})


def test_key_features_can_fire_alone() -> None:
    rng = np.random.default_rng(5)
    ref = pd.DataFrame({f"f{i}": rng.normal(size=3000) for i in range(5)})
    cur = ref.copy()
    cur["f0"] = cur["f0"] + 3
    plain = compare_frames(ref, cur)
    assert not plain.decision.drifted  # 1 of 5 < 50 %
    keyed = compare_frames(ref, cur, config=DriftConfig(key_features={"f0": 3.0, "f1": 1.0}))
    assert keyed.decision.drifted and keyed.decision.key_feature_share == pytest.approx(0.75)


def test_performance_decay_makes_the_decision() -> None:
    ok = performance_decay(0.80, 0.78)
    bad = performance_decay(0.80, 0.70)
    assert not ok.decayed and bad.decayed and bad.drop == pytest.approx(0.10)
    assert performance_decay(0.30, 0.40, metric="log_loss").decayed
    ref = pd.DataFrame({"x": np.arange(100.0)})
    report = compare_frames(ref, ref, performance=bad)
    assert report.decision.drifted and any("performance decay" in r for r in report.decision.reasons)


def test_sturges_edges_are_bit_identical_to_numpy() -> None:
    rng = np.random.default_rng(11)
    for a, b in [
        (rng.normal(size=1001), rng.normal(3, size=77)),
        (rng.integers(-50, 900, 5000), rng.integers(0, 30, 17)),
        (rng.integers(0, 25, 300), rng.normal(size=30)),
    ]:
        expected = np.histogram_bin_edges(pd.concat([pd.Series(a), pd.Series(b)]).values, bins="sturges")
        got = sturges_edges(a, b)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_fill_zeroes_rule() -> None:
    assert fill_zeroes(np.array([0.0, 0.5, 0.5])).tolist() == [0.0001, 0.5, 0.5]
    assert fill_zeroes(np.array([0.0, 0.00005, 0.99995]))[0] == pytest.approx(0.00005 / 1e6)


def test_report_outputs(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = frames
    report = compare_frames(ref, cur)
    d = json.loads(report.to_json())
    assert set(d) >= {"features", "decision"}
    for f in d["features"].values():
        assert isinstance(f["psi"], float) and isinstance(f["kl"], float) and isinstance(f["js"], float)
        assert f["severity"] in ("none", "moderate", "major")
    page = report.to_html()
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert "num" in report.to_table()


def test_html_ranks_by_severity_and_explains_the_bands() -> None:
    rng = np.random.default_rng(4)
    n = 5000
    ref = pd.DataFrame({"steady": rng.normal(0, 1, n), "shifted": rng.normal(0, 1, n),
                        "city": rng.choice(["a", "b", "c"], n)})
    cur = pd.DataFrame({"steady": rng.normal(0, 1, n), "shifted": rng.normal(2, 1, n),
                        "city": rng.choice(["a", "b", "zz"], n)})
    report = compare_frames(ref, cur)
    page = report.to_html()
    assert page.index(">shifted</a>") < page.index(">steady</a>")  # the major feature is listed first
    assert "How to read this." in page and "from 0.1" in page and "from 0.2" in page
    assert page.count(">reference</text>") == len(report.features)  # a legend in every chart
    assert "100%" in page or "50%" in page or "25.0%" in page  # a y axis with percentages
    assert "Largest shifts" in page and "<b>(unseen)</b>" in page  # the unseen category's bar is named
    assert page == compare_frames(ref, cur).to_html()  # stable ids: the same page on every run


# A profile as the first Loopline wrote it (min/max bounds): it must load and be used as it is.
_LEGACY_PROFILE = {
    "schema_version": 1, "kind": "loopline.drift.reference_profile", "n_rows": 10, "n_bins": 3,
    "validation_metrics": {"roc_auc": 0.8},
    "features": {
        "x": {"kind": "numeric", "dtype": "float64", "lo": 0.0, "hi": 9.0, "n_inner": 3,
              "counts": [0, 3, 3, 4, 0], "missing": 0, "inf": 0, "total": 10},
        "c": {"kind": "categorical", "dtype": "object", "categories": ["a", "b"],
              "counts": [6, 4, 0], "missing": 0, "inf": 0, "total": 10},
    },
}


def test_legacy_profile_loads_and_compares_like_a_fresh_fit() -> None:
    ref = pd.DataFrame({"x": np.arange(10.0), "c": ["a"] * 6 + ["b"] * 4})
    fresh = ReferenceProfile.fit(ref, n_bins=3)
    legacy = ReferenceProfile.from_json(json.dumps(_LEGACY_PROFILE))
    assert fresh.features["x"].to_dict() == legacy.features["x"].to_dict()  # no far-out value: same bins
    cur = pd.DataFrame({"x": np.r_[np.arange(10.0), [50.0, -3.0]], "c": ["a", "b", "zz"] * 4})
    assert compare(legacy, cur).to_dict() == compare(fresh, cur).to_dict()


def test_legacy_profile_stretched_by_extremes_is_used_and_flagged() -> None:
    data = json.loads(json.dumps(_LEGACY_PROFILE))
    # 996 ordinary values and ±1e308 twice each: min/max bounds put all ordinary values in one bin
    data["features"]["x"].update(lo=-1e308, hi=1e308, n_inner=10, total=1000,
                                 counts=[0, 2, 0, 0, 0, 996, 0, 0, 0, 0, 2, 0])
    profile = ReferenceProfile.from_json(json.dumps(data))
    f = compare(profile, pd.DataFrame({"x": np.arange(10.0) + 5, "c": ["a"] * 10})).features["x"]
    assert all(math.isfinite(e) for e in f.bin_edges or [])
    assert any("re-fit the profile" in n for n in f.notes)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"counts": [3, 3, 4]}, r"3 counts for 3 inner bins.*underflow.*re-fit"),  # no under/overflow bins
        ({"counts": [0, 3, 3, 4]}, r"4 counts for 3 inner bins"),
        ({"lo": None}, r"unusable bins"),
        ({"lo": 10.0}, r"unusable bins"),
        ({"n_inner": 0, "counts": [0, 0]}, r"unusable bins"),
        ({"hi": float("inf")}, r"unusable bins"),
    ],
)
def test_unusable_numeric_profile_entries_fail_clearly(change: dict[str, object], match: str) -> None:
    data = json.loads(json.dumps(_LEGACY_PROFILE))
    data["features"]["x"].update(change)
    with pytest.raises(DriftInputError, match=r"feature 'x'.*" + match):
        ReferenceProfile.from_json(json.dumps(data))


_BAD_CONFIGS = [
    ({"psi_bands": (0.1, math.inf)}, "psi_bands"),
    ({"psi_bands": (math.nan, 0.2)}, "psi_bands"),
    ({"psi_bands": (0.1, math.nan)}, "psi_bands"),
    ({"psi_bands": (-math.inf, 0.2)}, "psi_bands"),
    ({"psi_bands": (0.2, 0.1)}, "psi_bands"),
    ({"psi_bands": (0.2, 0.2)}, "psi_bands"),
    ({"psi_bands": (-0.1, 0.2)}, "psi_bands"),
    ({"psi_bands": (0.1, 0.2, 0.3)}, "psi_bands"),
    ({"psi_bands": ("0.1", "0.2")}, "psi_bands"),
    ({"smoothing": -1e-4}, "smoothing"),
    ({"smoothing": math.nan}, "smoothing"),
    ({"smoothing": math.inf}, "smoothing"),
    ({"drift_share": math.nan}, "drift_share"),
    ({"key_feature_share": math.nan}, "key_feature_share"),
    ({"key_feature_share": 0.0}, "key_feature_share"),
    ({"key_features": {"a": math.nan}}, "key_features"),
    ({"max_performance_drop": math.inf}, "max_performance_drop"),
    ({"top_k": -1}, "top_k"),
]


@pytest.mark.parametrize(("kwargs", "parameter"), _BAD_CONFIGS)
def test_config_rejects_unusable_values_naming_the_parameter(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(DriftConfigError, match=parameter) as info:
        DriftConfig(**kwargs)  # type: ignore[arg-type]
    assert info.value.parameter == parameter
    with pytest.raises(ValueError, match=parameter):
        DriftConfig.from_env({}, **kwargs)


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"LOOPLINE_PSI_BANDS": "0.1,inf"}, "LOOPLINE_PSI_BANDS"),
        ({"LOOPLINE_PSI_BANDS": "nan,0.2"}, "LOOPLINE_PSI_BANDS"),
        ({"LOOPLINE_PSI_BANDS": "0.25,0.1"}, "LOOPLINE_PSI_BANDS"),
        ({"LOOPLINE_DRIFT_SMOOTHING": "-0.001"}, "LOOPLINE_DRIFT_SMOOTHING"),
        ({"LOOPLINE_DRIFT_SMOOTHING": "nan"}, "LOOPLINE_DRIFT_SMOOTHING"),
        ({"LOOPLINE_DRIFT_SHARE": "inf"}, "LOOPLINE_DRIFT_SHARE"),
        ({"LOOPLINE_KEY_FEATURES": "a=-1"}, "LOOPLINE_KEY_FEATURES"),
    ],
)
def test_env_config_errors_name_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ValueError, match=var):
        DriftConfig.from_env(env)


def test_valid_edge_configs_are_accepted() -> None:
    assert DriftConfig(psi_bands=(0.0, 0.1), smoothing=0.0).smoothing == 0.0
    assert DriftConfig(psi_bands=[0.1, 0.3]).severity(0.3) == "major"  # type: ignore[arg-type]
