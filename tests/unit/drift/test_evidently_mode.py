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
