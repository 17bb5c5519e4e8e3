"""Metrics against scipy, and their properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from loopline.drift import metrics
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy

pytestmark = pytest.mark.unit


def _hist_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    pairs = []
    for k in (2, 5, 13, 40):
        p = rng.random(k)
        q = rng.random(k)
        pairs.append((p / p.sum(), q / q.sum()))
    pairs.append((np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.3, 0.5])))  # zeros on one side
    pairs.append((np.array([3.0, 1.0, 0.0]), np.array([1.0, 1.0, 2.0])))  # counts, not proportions
    return pairs


@pytest.mark.parametrize(("p", "q"), _hist_pairs())
def test_kl_matches_scipy_entropy(p: np.ndarray, q: np.ndarray) -> None:
    assert metrics.kl_divergence(p, q) == pytest.approx(entropy(p, q), abs=1e-12)
    assert metrics.kl_divergence(p, q, base=2) == pytest.approx(entropy(p, q, base=2), abs=1e-12)


@pytest.mark.parametrize(("p", "q"), _hist_pairs())
def test_js_matches_scipy_jensenshannon(p: np.ndarray, q: np.ndarray) -> None:
    assert metrics.js_distance(p, q) == pytest.approx(jensenshannon(p, q), abs=1e-12)
    assert metrics.js_distance(p, q, base=2) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)
    assert metrics.js_divergence(p, q) == pytest.approx(jensenshannon(p, q) ** 2, abs=1e-12)


def test_psi_formula_and_zero_handling() -> None:
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.3, 0.3, 0.4])
    expected = sum((a - b) * math.log(a / b) for a, b in zip(p, q, strict=True))
    assert metrics.psi(p, q) == pytest.approx(expected, abs=1e-15)
    assert metrics.psi([0.5, 0.5, 0.0], [0.5, 0.5, 0.0]) == 0.0  # empty on both sides carries nothing
    assert metrics.psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]) == math.inf  # empty on one side only


def test_kl_is_infinite_where_current_is_empty() -> None:
    assert metrics.kl_divergence([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert metrics.kl_divergence([1.0, 0.0], [0.5, 0.5]) == pytest.approx(math.log(2))


def test_properties_on_random_histograms() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        k = int(rng.integers(2, 30))
        p = metrics.smooth(rng.dirichlet(np.ones(k)), 1e-4)
        q = metrics.smooth(rng.dirichlet(np.ones(k)), 1e-4)
        assert metrics.psi(p, q) >= 0
        assert metrics.psi(p, q) == pytest.approx(metrics.psi(q, p))  # PSI is symmetric by construction
        js = metrics.js_distance(p, q)
        assert js == pytest.approx(metrics.js_distance(q, p), abs=1e-15)
        assert 0 <= js <= math.sqrt(math.log(2)) + 1e-12
        assert 0 <= metrics.js_distance(p, q, base=2) <= 1 + 1e-12
        assert metrics.psi(p, p) == 0 and metrics.kl_divergence(p, p) == 0 and metrics.js_distance(p, p) == 0


def test_smooth_keeps_sum_and_identity() -> None:
    p = np.array([0.0, 0.25, 0.75])
    s = metrics.smooth(p, 1e-4)
    assert s.sum() == pytest.approx(1.0)
    assert (s > 0).all()
    assert metrics.smooth(p, 0) is not None and (metrics.smooth(p, 0) == p).all()


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="same bins"):
        metrics.psi([0.5, 0.5], [1.0])
