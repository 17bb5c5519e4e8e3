"""Divergence metrics between two binned distributions.

All functions take two 1-D arrays of non-negative bin weights over the *same* bins (counts or
proportions) and return a Python float. Logarithms are natural unless a ``base`` is given.

The formulas follow the peers they are checked against:

* :func:`kl_divergence` is ``scipy.stats.entropy(p, q)``: both inputs are normalised to sum to 1 first,
  a bin with ``p == 0`` contributes 0, a bin with ``p > 0`` and ``q == 0`` makes the result ``inf``.
* :func:`js_distance` is ``scipy.spatial.distance.jensenshannon(p, q, base)``: the square root of the
  Jensen–Shannon divergence, normalising both inputs; it is finite for any pair of distributions and lies
  in ``[0, sqrt(ln 2)]`` with the natural log, ``[0, 1]`` with base 2.
* :func:`psi` is ``Σ (p − q)·ln(p / q)`` on the arrays *as given* (no normalisation), which is how
  Evidently computes it on its zero-filled proportions; it is ``inf`` when exactly one side of a bin is 0.

Smoothing of empty bins is not done here; see :func:`smooth`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def _as_float(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _rel_entr(x: FloatArray, y: FloatArray) -> FloatArray:
    """Elementwise ``x·ln(x/y)`` with scipy's ``rel_entr`` conventions (0 for x == 0, inf for y == 0 < x)."""
    out = np.zeros_like(x)
    both = (x > 0) & (y > 0)
    out[both] = x[both] * np.log(x[both] / y[both])
    out[(x > 0) & (y <= 0)] = np.inf
    out[(x < 0) | (y < 0)] = np.inf
    return out


def smooth(proportions: npt.ArrayLike, eps: float) -> FloatArray:
    """Additive smoothing of a probability vector so that no bin is empty.

    Every bin gets ``eps`` added and the vector is renormalised: ``(p + eps) / (1 + k·eps)`` for ``k`` bins.
    The result is strictly positive when ``eps > 0``, still sums to 1, leaves two identical vectors
    identical (so identical samples keep PSI = KL = 0), and does not depend on the sample size.

    Args:
        proportions: Bin proportions summing to 1 (or an all-zero vector for an empty sample).
        eps: Pseudo-proportion added to every bin; 0 disables smoothing.

    Returns:
        The smoothed proportions.
    """
    p = _as_float(proportions)
    if eps <= 0:
        return p
    return (p + eps) / (1.0 + p.size * eps)


def psi(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """Population stability index ``Σ (p − q)·ln(p / q)``, on the arrays as given.

    Args:
        reference: Reference proportions ``p``.
        current: Current proportions ``q``, same bins.

    Returns:
        The PSI (≥ 0 for two probability vectors); ``inf`` when one side of a bin is 0 and the other is not.
    """
    p, q = _as_float(reference), _as_float(current)
    _check_same_shape(p, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (p - q) * np.log(p / q)
    # A bin empty on both sides carries no information (0·ln(0/0) is taken as 0).
    terms[(p == 0) & (q == 0)] = 0.0
    terms[np.isnan(terms)] = np.inf
    return float(np.sum(terms))


def kl_divergence(reference: npt.ArrayLike, current: npt.ArrayLike, base: float | None = None) -> float:
    """Kullback–Leibler divergence KL(reference ‖ current), as ``scipy.stats.entropy(p, q, base)``.

    Args:
        reference: Reference weights ``p`` (normalised here).
        current: Current weights ``q`` (normalised here).
        base: Logarithm base; natural log when None.

    Returns:
        The divergence in nats (or in the given base); ``inf`` when ``q`` is 0 where ``p`` is not.
    """
    p, q = _normalise(_as_float(reference)), _normalise(_as_float(current))
    _check_same_shape(p, q)
    value = float(np.sum(_rel_entr(p, q)))
    if base is not None:
        value /= math.log(base)
    return value


def js_divergence(reference: npt.ArrayLike, current: npt.ArrayLike, base: float | None = None) -> float:
    """Jensen–Shannon divergence ``½·KL(p‖m) + ½·KL(q‖m)`` with ``m = (p + q)/2`` (the square of the distance).

    Args:
        reference: Reference weights (normalised here).
        current: Current weights (normalised here).
        base: Logarithm base; natural log when None (then the value lies in ``[0, ln 2]``).

    Returns:
        The divergence.
    """
    p, q = _normalise(_as_float(reference)), _normalise(_as_float(current))
    _check_same_shape(p, q)
    m = (p + q) / 2.0
    value = float(np.sum(_rel_entr(p, m))) + float(np.sum(_rel_entr(q, m)))
    if base is not None:
        value /= math.log(base)
    return max(value / 2.0, 0.0)


def js_distance(reference: npt.ArrayLike, current: npt.ArrayLike, base: float | None = None) -> float:
    """Jensen–Shannon distance, as ``scipy.spatial.distance.jensenshannon(p, q, base)``.

    Args:
        reference: Reference weights (normalised here).
        current: Current weights (normalised here).
        base: Logarithm base; natural log when None.

    Returns:
        ``sqrt(js_divergence(p, q, base))``: symmetric, in ``[0, sqrt(ln 2)]`` (natural) or ``[0, 1]`` (base 2).
    """
    return math.sqrt(js_divergence(reference, current, base))


def _normalise(p: FloatArray) -> FloatArray:
    total = p.sum()
    if total <= 0 or not np.isfinite(total):
        return np.full_like(p, np.nan)
    return p / total


def _check_same_shape(p: FloatArray, q: FloatArray) -> None:
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"reference and current must be 1-D over the same bins, got {p.shape} and {q.shape}")
