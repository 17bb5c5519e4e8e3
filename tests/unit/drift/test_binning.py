"""The numeric kernel against np.histogram, and category counting."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from loopline.drift.binning import count_categories, count_numeric, numeric_edges

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32])
def test_inner_bins_match_np_histogram(dtype: type) -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=200_003) * 100).astype(dtype)
    lo, hi, n = -150.0, 170.0, 10
    counts = count_numeric(x, lo, hi, n)
    expected = np.histogram(x, bins=n, range=(lo, hi))[0]
    # identical up to values within ulps of an inner edge (documented): allow a handful
    assert np.abs(counts.bins[1:-1] - expected).sum() <= 4
    assert counts.bins[0] == np.count_nonzero(x < lo)
    assert counts.bins[-1] == np.count_nonzero(x > hi)
    assert counts.bins.sum() + counts.missing == x.size


def test_nan_and_inf_are_counted_never_lost() -> None:
    x = np.array([np.nan, np.inf, -np.inf, 0.5, 1.0, 0.0, 2.0, -1.0, np.nan])
    c = count_numeric(x, 0.0, 1.0, 2)
    assert c.missing == 2
    assert c.inf == 2
    assert c.bins.tolist() == [2, 1, 2, 2]  # under: -inf,-1; [0,.5): 0; [.5,1]: .5,1; over: inf,2
    assert c.bins.sum() + c.missing == x.size


def test_constant_bin_holds_exactly_the_constant() -> None:
    c = count_numeric(np.array([3.0, 3.0, 3.0000001, 2.9]), 3.0, 3.0, 1)
    assert c.bins.tolist() == [1, 2, 1]


def test_edges_for_small_integer_ranges_and_constants() -> None:
    assert numeric_edges(np.array([0, 1, 2, 3, 1]), 10) == (-0.5, 3.5, 4)
    assert numeric_edges(np.arange(100), 10) == (0.0, 99.0, 10)
    assert numeric_edges(np.array([2.5, 2.5]), 10) == (2.5, 2.5, 1)
    assert numeric_edges(np.array([np.nan, np.inf]), 10) == (0.0, 0.0, 1)


def test_count_categories_unseen_and_missing() -> None:
    s = pd.Series(["a", "b", None, "zz", "a", "b", "b"])
    c = count_categories(s, ["b", "a"])
    assert c.bins.tolist() == [3, 2]
    assert (c.unseen, c.missing, c.total) == (1, 1, 7)


def test_count_categories_bool_and_int() -> None:
    assert count_categories(pd.Series([True, False, True]), [True, False]).bins.tolist() == [2, 1]
    c = count_categories(pd.Series([1, 2, 2, 7]), [2, 1])
    assert c.bins.tolist() == [2, 1] and c.unseen == 1


def _outliers(value: float, k: int) -> np.ndarray:
    return np.full(k, value, dtype=np.float64)


@pytest.mark.parametrize("n", [200, 1_000, 20_000])
@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("extreme", [1e308, -1e308, np.inf, -np.inf, 1e12, -999_999.0, "both"])
def test_a_few_extreme_reference_values_do_not_hide_a_shift(n: int, k: int, extreme: float | str) -> None:
    from loopline.drift import compare_frames

    rng = np.random.default_rng(n + k)
    base = rng.normal(size=n)
    if extreme == "both":
        bad = np.r_[_outliers(1e308, k), _outliers(-1e308, k)]
    else:
        bad = _outliers(float(extreme), k)
    ref = pd.DataFrame({"x": np.r_[base, bad]})
    shifted = pd.DataFrame({"x": rng.normal(1.0, size=n)})
    same = pd.DataFrame({"x": np.r_[rng.normal(size=n), bad]})
    f = compare_frames(ref, shifted).features["x"]
    assert f.severity == "major", (f.psi, f.bin_edges)
    assert np.isfinite(f.bin_edges).all() and f.bin_edges[-1] - f.bin_edges[0] < 20  # the bulk sets the bins
    assert not compare_frames(ref, same).features["x"].drifted
    # the extreme training values are counted in the under/overflow bins, not dropped
    assert sum(f.reference_proportions) == pytest.approx(1.0)
    assert f.reference_proportions[0] + f.reference_proportions[-2] >= bad.size / ref.shape[0] - 1e-12


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).normal(size=500),
        np.random.default_rng(1).uniform(-3, 7, size=10_000),
        np.random.default_rng(3).integers(-40, 900, size=5_000),
        np.r_[np.zeros(900), np.random.default_rng(4).uniform(0, 50, 100)],  # mostly zeros
        np.array([1.0, 2.0]),
        np.array([-1e300, 1e300]),  # two values only: nothing is "far out" of a two-point sample
    ],
)
def test_without_far_out_values_the_bounds_are_min_and_max(values: np.ndarray) -> None:
    lo, hi, _ = numeric_edges(values, 10)
    if values.dtype.kind in "iu" and values.max() - values.min() < 10:
        assert (lo, hi) == (values.min() - 0.5, values.max() + 0.5)
    else:
        assert (lo, hi) == (values.min(), values.max())


def test_far_out_values_go_to_under_and_overflow_and_are_counted() -> None:
    x = np.r_[np.arange(1000.0), [1e308, 5e6, -7e9]]
    lo, hi, n = numeric_edges(x, 10)
    assert (lo, hi, n) == (0.0, 999.0, 10)
    c = count_numeric(x, lo, hi, n)
    assert (c.bins[0], c.bins[-1]) == (1, 2)
    assert c.bins.sum() == x.size


def test_integer_column_cut_by_the_fence_keeps_one_bin_per_integer() -> None:
    x = np.r_[np.repeat(np.arange(4), 100), [10**9, 10**9]]
    assert numeric_edges(x, 10) == (-0.5, 3.5, 4)


@pytest.mark.parametrize(("share", "expected"), [(0.97, None), (0.995, (0.0, 0.0, 1))])
def test_mostly_constant_column(share: float, expected: tuple[float, float, int] | None) -> None:
    rng = np.random.default_rng(9)
    n = 10_000
    x = np.where(rng.random(n) < share, 0.0, rng.uniform(1, 2, n))
    x[:3] = 1e308
    edges = numeric_edges(x, 10)
    if expected is None:  # the 1 % / 99 % spread sets the fences: the non-zero values keep their bins
        assert edges[0] == 0.0 and 1.9 < edges[1] <= 2.0 and edges[2] == 10
    else:  # 99.5 % zeros: one bin for the zeros, everything else under/overflow
        assert edges == expected


def test_a_range_wider_than_the_largest_float_still_bins() -> None:
    """A profile fitted before the robust bounds may hold ±1e308 bounds: its inner bins must still work."""
    x = np.array([-1e308, -1e307, 0.0, 1e307, 1e308, np.nan])
    c = count_numeric(x, -1e308, 1e308, 4)  # inner bins 5e307 wide
    assert c.bins.tolist() == [0, 1, 1, 2, 1, 0]
    assert c.missing == 1


def test_a_heavy_tail_beyond_the_fence_is_one_counted_bin() -> None:
    x = np.random.default_rng(2).exponential(size=3_000)
    lo, hi, n = numeric_edges(x, 10)
    q1, q3 = np.quantile(x, [0.25, 0.75])
    assert lo == x.min() and hi == x[x <= q3 + 3 * (q3 - q1)].max() < x.max()
    assert count_numeric(x, lo, hi, n).bins[-1] == np.count_nonzero(x > hi) > 0
