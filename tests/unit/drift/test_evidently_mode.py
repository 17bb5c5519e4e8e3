"""``evidently`` mode against a direct, slow transcription of Evidently 0.7's algorithm (no Evidently needed).

The benchmark checks the same numbers against a real Evidently 0.7 report.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from loopline.drift import compare_frames
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

pytestmark = pytest.mark.unit


def _slow_binned(ref: pd.Series, cur: pd.Series, numeric: bool, fill: bool) -> tuple[np.ndarray, np.ndarray]:
    ref = ref.replace([-np.inf, np.inf], np.nan).dropna()
    cur = cur.replace([-np.inf, np.inf], np.nan).dropna()
    if numeric and ref.nunique() > 20:
        edges = np.histogram_bin_edges(pd.concat([ref, cur]).values, bins="sturges")
        p = np.histogram(ref, edges)[0] / len(ref)
        q = np.histogram(cur, edges)[0] / len(cur)
    else:
        keys = sorted(set(ref.unique()) | set(cur.unique()), key=str)
        rc, cc = ref.value_counts(), cur.value_counts()
        p = np.array([rc.get(k, 0) / len(ref) for k in keys])
        q = np.array([cc.get(k, 0) / len(cur) for k in keys])
    if fill:
        for arr in (p, q):
            m = arr[arr != 0].min()
            arr[arr == 0] = m / 10**6 if m <= 0.0001 else 0.0001
    return p, q


def _cases() -> list[tuple[str, pd.Series, pd.Series, bool]]:
    rng = np.random.default_rng(9)
    n = 30_000
    heavy = pd.Series(rng.standard_t(3, n))
    heavy[:50] = np.nan
    heavy[50:55] = np.inf
    shifted = pd.Series(rng.standard_t(3, n) + 0.3)
    shifted[:10] = -np.inf
    return [
        ("heavy", heavy, shifted, True),
        ("ints_few", pd.Series(rng.integers(0, 6, n)), pd.Series(rng.integers(1, 8, n)), True),
        ("ints_many", pd.Series(rng.integers(0, 500, n)), pd.Series(rng.integers(0, 900, 999)), True),
        ("floats_few", pd.Series(rng.choice([0.5, 1.5, 2.5], n)), pd.Series(rng.choice([0.5, 3.5], n)), True),
        ("cats", pd.Series(rng.choice(["a", "b", "c", None], n)), pd.Series(rng.choice(["a", "d", None], n)), False),
        ("bools", pd.Series(rng.random(n) < 0.2), pd.Series(rng.random(n) < 0.6), False),
        ("cat_dtype", pd.Series(rng.choice(["x", "y"], n)).astype(pd.CategoricalDtype(["x", "y", "z"])),
         pd.Series(rng.choice(["x", "z"], n)).astype(pd.CategoricalDtype(["x", "y", "z"])), False),
    ]


@pytest.mark.parametrize(("name", "ref", "cur", "numeric"), _cases())
def test_matches_transcribed_evidently(name: str, ref: pd.Series, cur: pd.Series, numeric: bool) -> None:
    f = compare_frames(ref.to_frame(name), cur.to_frame(name), binning="evidently").features[name]
    assert f.kind == ("numeric" if numeric else "categorical")
    pf, qf = _slow_binned(ref, cur, numeric, fill=True)
    p, q = _slow_binned(ref, cur, numeric, fill=False)
    assert f.psi == pytest.approx(float(np.sum((pf - qf) * np.log(pf / qf))), abs=1e-12)
    assert f.kl == pytest.approx(float(entropy(pf, qf)), abs=1e-12)
    assert f.js == pytest.approx(float(jensenshannon(p, q)), abs=1e-12)
    assert f.js_base2 == pytest.approx(float(jensenshannon(p, q, base=2)), abs=1e-12)


def _int_cases() -> list[tuple[str, pd.Series, pd.Series]]:
    rng = np.random.default_rng(13)
    n = 40_000
    return [
        ("two_values", pd.Series(rng.integers(0, 2, n)), pd.Series(rng.integers(0, 2, 777))),
        ("span_4_negative", pd.Series(rng.integers(-2, 2, n)), pd.Series(rng.integers(-3, 1, n))),
        ("span_12", pd.Series(rng.integers(0, 12, n)), pd.Series(rng.integers(3, 15, n))),
        ("span_14_negative_int8_range", pd.Series(rng.integers(-7, 7, n)), pd.Series(rng.integers(-9, 5, n))),
        ("span_10_offset_beyond_int8", pd.Series(rng.integers(1000, 1010, n)), pd.Series(rng.integers(995, 1008, n))),
        ("int16_near_int8_limit", pd.Series(rng.integers(120, 128, n).astype(np.int16)),
         pd.Series(rng.integers(118, 131, n).astype(np.int16))),
        ("twenty_exactly", pd.Series(rng.integers(0, 20, n)), pd.Series(rng.integers(0, 25, n))),
        ("sixty_histogram", pd.Series(rng.integers(0, 60, n)), pd.Series(rng.integers(5, 70, n))),
        ("negative_many", pd.Series(rng.integers(-400, 300, n)), pd.Series(rng.integers(-500, 100, 999))),
        ("large_offset", pd.Series(10**12 + rng.integers(0, 90, n)), pd.Series(10**12 + rng.integers(10, 95, n))),
        ("int32", pd.Series(rng.integers(0, 45, n).astype(np.int32)),
         pd.Series(rng.integers(0, 50, n).astype(np.int32))),
        ("uint8_few", pd.Series(rng.integers(0, 3, n).astype(np.uint8)),
         pd.Series(rng.integers(1, 4, n).astype(np.uint8))),
        ("wide_range", pd.Series(rng.integers(0, 10**9, n)), pd.Series(rng.integers(0, 10**9, n))),
        ("bool_as_numeric", pd.Series(rng.random(n) < 0.3), pd.Series(rng.random(n) < 0.5)),
        ("ints_with_nan_current", pd.Series(rng.integers(0, 30, n)),
         pd.Series(np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 30, n)))),
        ("integer_floats_with_nan", pd.Series(np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 60, n) * 1.0)),
         pd.Series(np.where(rng.random(n) < 0.01, np.inf, rng.integers(0, 70, n) * 1.0))),
    ]


@pytest.mark.parametrize(("name", "ref", "cur"), _int_cases())
def test_integer_counting_paths_match_transcribed_evidently(name: str, ref: pd.Series, cur: pd.Series) -> None:
    f = compare_frames(ref.to_frame(name), cur.to_frame(name), binning="evidently",
                       feature_kinds={name: "numeric"}).features[name]
    r, c = ref.astype(np.float64), cur.astype(np.float64)  # the transcription on the same values
    pf, qf = _slow_binned(r, c, True, fill=True)
    p, q = _slow_binned(r, c, True, fill=False)
    # the same bins with the same shares (the transcription orders value bins by their text)
    assert sorted(zip(f.reference_proportions, f.current_proportions, strict=True)) == sorted(zip(p, q, strict=True))
    assert f.psi == pytest.approx(float(np.sum((pf - qf) * np.log(pf / qf))), abs=1e-12)
    assert f.kl == pytest.approx(float(entropy(pf, qf)), abs=1e-12)
    assert f.js == pytest.approx(float(jensenshannon(p, q)), abs=1e-12)


def test_integer_histogram_edges_and_labels_follow_numpy() -> None:
    rng = np.random.default_rng(5)
    ref, cur = pd.Series(rng.integers(-30, 40, 5000)), pd.Series(rng.integers(-35, 30, 3000))
    f = compare_frames(ref.to_frame("x"), cur.to_frame("x"), binning="evidently").features["x"]
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    assert f.bin_edges == list(edges)
    assert f.reference_proportions == list(np.histogram(ref, edges)[0] / ref.size)
    assert f.bin_labels[0].startswith("[-35") and f.bin_labels[-1].endswith("]")
    assert f.out_of_range_current == pytest.approx(np.count_nonzero(cur < -30) / cur.size)


@pytest.mark.parametrize("seed", range(6))
def test_histogram_counts_equals_np_histogram_on_awkward_values(seed: int) -> None:
    from loopline.drift.evidently_mode import histogram_counts, sturges_edges

    rng = np.random.default_rng(seed)
    n = 50_000
    samples = [
        rng.normal(0, 1, n),
        rng.integers(-50, 50, n).astype(float),  # integer-valued floats: values land exactly on edges
        rng.integers(0, 23, n) * 0.1,
        1e15 + rng.integers(0, 40, n),  # large offset, few ulps per bin
        np.round(rng.normal(10, 3, n), 2),
        np.concatenate([rng.standard_t(3, n), [1e300, -1e300]]),  # outliers: all mass in one fine cell
    ]
    for x in samples:
        edges = sturges_edges(x, x[:0], (x.min(), x.max()))
        near = np.clip(np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)]),
                       edges[0], edges[-1])
        y = np.concatenate([x, near])
        assert np.array_equal(histogram_counts(y, edges), np.histogram(y, edges)[0])
        dirty = np.concatenate([y, [np.nan, np.inf, -np.inf, np.nan]])
        rng.shuffle(dirty)
        assert np.array_equal(histogram_counts(dirty, edges, skip_nonfinite=True), np.histogram(y, edges)[0])
