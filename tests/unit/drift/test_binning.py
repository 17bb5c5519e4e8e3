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
