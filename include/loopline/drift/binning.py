"""Column checks and the vectorised binning kernels shared by both binning modes.

Numeric bins in ``reference`` mode are laid out as ``[underflow, inner_1 … inner_n, overflow]`` plus a
separate missing count: inner bin ``k`` is ``[lo + (k-1)·w, lo + k·w)`` with ``w = (hi - lo)/n``, the last
inner bin includes ``hi``, ``-inf`` and values below ``lo`` go to the underflow bin, ``+inf`` and values
above ``hi`` to the overflow bin, NaN/None to the missing count. ``lo`` and ``hi`` are robust bounds of the
training values (:func:`robust_bounds`), so a few extreme training values land in the under/overflow bins
instead of stretching the inner bins. Under- and overflow are exact comparisons
against ``lo``/``hi``; an inner value lying within a few ulps of an inner edge may be placed on either side
of it (the index is computed arithmetically, as ``np.histogram`` does for uniform bins before its
fix-ups) — the same function bins training and scoring data, so both are binned the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loopline.drift.config import DriftInputError

NUMERIC = "numeric"
CATEGORICAL = "categorical"
KINDS = (NUMERIC, CATEGORICAL)

_CHUNK = 65_536  # rows per block: keeps the temporaries in cache, as np.histogram does

JsonScalar = str | int | float | bool


def infer_kind(series: pd.Series, column: str) -> str:
    """Infer whether a column is ``"numeric"`` or ``"categorical"``.

    Booleans, strings, pandas categoricals and objects are categorical; integers and floats are numeric.

    Args:
        series: The column.
        column: Its name, for the error message.

    Returns:
        ``"numeric"`` or ``"categorical"``.

    Raises:
        DriftInputError: The column holds datetimes, timedeltas, periods or complex numbers.
    """
    check_supported(series, column)
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return CATEGORICAL
    if isinstance(dtype, pd.CategoricalDtype):
        return CATEGORICAL
    if pd.api.types.is_numeric_dtype(dtype):
        return NUMERIC
    return CATEGORICAL


def check_supported(series: pd.Series, column: str) -> None:
    """Reject dtypes that have no meaningful bins.

    Raises:
        DriftInputError: For datetime, timedelta, period and complex columns, naming the column.
    """
    dtype = series.dtype
    if (
        pd.api.types.is_datetime64_any_dtype(dtype)
        or pd.api.types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    ):
        raise DriftInputError(
            f"column {column!r} has dtype {dtype}: drift is computed on numeric or categorical features only. "
            "Derive a numeric feature from it (epoch seconds, hour of day, day of week) or leave it out "
            "with --columns / columns=[...]."
        )
    if pd.api.types.is_complex_dtype(dtype):
        raise DriftInputError(f"column {column!r} is complex-valued; split it into real features first.")


def resolve_kind(series: pd.Series, column: str, kinds: dict[str, str] | None) -> str:
    """The kind given in ``kinds`` for ``column`` (validated), else the inferred one."""
    check_supported(series, column)
    if kinds and column in kinds:
        kind = kinds[column]
        if kind not in KINDS:
            raise DriftInputError(f"feature_kinds[{column!r}] is {kind!r}; use 'numeric' or 'categorical'.")
        return kind
    return infer_kind(series, column)


def numeric_values(series: pd.Series, column: str) -> npt.NDArray[Any]:
    """The column as a numpy int or float array (NaN for missing), without copying when possible.

    Raises:
        DriftInputError: The column declared numeric holds values that are not numbers.
    """
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
        return series.to_numpy()
    if pd.api.types.is_bool_dtype(dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(dtype):  # nullable Int64/Float64, Arrow-backed numbers
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DriftInputError(
            f"column {column!r} is declared numeric but holds non-numeric values ({exc}); "
            "declare it 'categorical' in feature_kinds or clean the column."
        ) from exc


@dataclass(frozen=True)
class NumericCounts:
    """Counts of one numeric sample over ``[underflow, inner…, overflow]`` plus the non-binned signals.

    Attributes:
        bins: Counts of length ``n + 2`` (underflow, ``n`` inner bins, overflow).
        missing: NaN / None count.
        inf: Count of ±inf (already inside the under/overflow bins).
        total: Number of rows.
    """

    bins: npt.NDArray[np.int64]
    missing: int
    inf: int
    total: int


def count_numeric(values: npt.NDArray[Any], lo: float, hi: float, n: int) -> NumericCounts:
    """Bin a numeric array into ``n`` equal-width bins on ``[lo, hi]`` plus under/overflow, in one pass.

    Args:
        values: Int or float array (NaN for missing).
        lo: Lower edge of the first inner bin.
        hi: Upper edge of the last inner bin (inclusive).
        n: Number of inner bins (≥ 1). With ``lo == hi`` the single inner bin holds the values equal to ``lo``.

    Returns:
        The counts.
    """
    x = np.asarray(values)
    if x.ndim != 1:
        x = x.ravel()
    is_float = x.dtype.kind == "f"
    inner = np.zeros(n + 1, dtype=np.int64)  # index 0 is a scratch slot, inner bins are 1..n
    under = over = missing = 0
    # A range wider than the largest float (bounds near ±1e308, e.g. in a profile fitted before the robust
    # bounds) is binned on halved values, so its width stays finite instead of every value landing in bin 1.
    halve = hi > lo and not math.isfinite(hi - lo)
    scale = (n / (hi / 2 - lo / 2) if halve else n / (hi - lo)) if hi > lo else 0.0
    buf = np.empty(min(_CHUNK, max(x.size, 1)), dtype=np.float64)
    # A value near ±1e308 times the scale overflows to ±inf: it is clamped to the end bins like any other.
    with np.errstate(over="ignore"):
        for start in range(0, x.size, _CHUNK):
            chunk = x[start : start + _CHUNK]
            f = buf[: chunk.size]
            # (x - lo)·scale + 1, subtracting first so a large offset (epoch seconds) keeps its precision.
            if halve:
                np.multiply(chunk, 0.5, out=f, casting="unsafe")
                f -= lo / 2
            else:
                np.subtract(chunk, lo, out=f, casting="unsafe")
            f *= scale
            f += 1.0
            # fmax maps NaN to 1 (first inner bin); NaN, under- and overflow are then moved out exactly below.
            np.fmax(f, 1.0, out=f)
            np.fmin(f, float(n), out=f)
            inner += np.bincount(f.astype(np.intp), minlength=n + 1)
            chunk_under = int(np.count_nonzero(chunk < lo))
            chunk_over = int(np.count_nonzero(chunk > hi))
            chunk_nan = int(np.count_nonzero(np.isnan(chunk))) if is_float else 0
            under += chunk_under
            over += chunk_over
            missing += chunk_nan
            # Below lo, NaN (via fmax) → slot 1; above hi → slot n (when n == 1 both are slot 1).
            inner[1] -= chunk_under + chunk_nan
            inner[n] -= chunk_over
    inf = int(np.count_nonzero(np.isinf(x))) if is_float and (under or over) else 0
    bins = np.empty(n + 2, dtype=np.int64)
    bins[0] = under
    bins[1 : n + 1] = inner[1:]
    bins[n + 1] = over
    return NumericCounts(bins=bins, missing=missing, inf=inf, total=int(x.size))


FENCE_K = 3.0
"""Tukey's "far out" multiplier: the reference bounds stop at ``k`` interquartile ranges beyond the quartiles."""


def robust_bounds(values: npt.NDArray[Any]) -> tuple[float, float] | None:
    """The range the inner bins cover: Tukey's whisker ends with far-out fences, on the finite values.

    The fences are ``Q1 − 3·IQR`` and ``Q3 + 3·IQR``; the bounds are the most extreme reference values
    *inside* them (the whisker ends of a box plot). Why this rule:

    * it is what the seeds did whenever no value is far out: the bounds are then the finite min and max,
      so a well-behaved column keeps exactly its former bins;
    * it breaks down only when more than a quarter of the rows are extreme on one side, whereas the
      min/max let one ``±1e308`` stretch the equal-width bins until every real value shares one bin and a
      real shift scores PSI 0 (a 0.1 % / 99.9 % quantile range still fails with a handful of outliers in a
      few hundred rows);
    * bounds are observed values, so an integer column cut by a fence still gets one bin per integer;
    * values beyond the bounds are not dropped: the under- and overflow bins count them, in training and
      in every batch, so a heavy tail (delays, amounts) is still compared, as one bin at each end.

    When the quartiles coincide (a column that is mostly one value) the 1 % / 99 % quantiles set the spread
    instead; when those coincide too, the bounds are that one value.

    Args:
        values: Reference values (int or float; NaN and ±inf are ignored).

    Returns:
        ``(lo, hi)``, or None when there is no finite value.
    """
    x = np.asarray(values)
    if x.dtype.kind == "f":
        x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    lo, hi = x.min(), x.max()
    if lo == hi:
        return float(lo), float(hi)
    xf = x.astype(np.float64, copy=False)
    for q_low, q_high in ((0.25, 0.75), (0.01, 0.99)):
        a, b = (float(v) for v in np.quantile(xf, [q_low, q_high]))
        spread = b - a
        if spread > 0:
            break
    with np.errstate(over="ignore"):  # a spread near 1e308 makes the fences ±inf: nothing is then far out
        fence_lo, fence_hi = a - FENCE_K * spread, b + FENCE_K * spread
    if fence_lo > lo:
        lo = x[x >= fence_lo].min()
    if fence_hi < hi:
        hi = x[x <= fence_hi].max()
    return float(lo), float(hi)


def numeric_edges(values: npt.NDArray[Any], n_bins: int) -> tuple[float, float, int]:
    """Choose ``(lo, hi, n)`` for equal-width bins between the robust bounds of the training values.

    The bounds are :func:`robust_bounds` (the finite min and max unless some values are far out; those are
    counted in the under/overflow bins). Integer columns whose bounded range fits in ``n_bins`` get one bin
    per integer (edges at half-integers), so a column with few values is not split into empty slivers; a
    constant column gets one bin holding exactly that value; a column with no finite value gets ``(0, 0, 1)``.

    Args:
        values: Training values.
        n_bins: Requested number of inner bins.

    Returns:
        ``(lo, hi, n)``.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be ≥ 1, got {n_bins}")
    bounds = robust_bounds(values)
    if bounds is None:
        return 0.0, 0.0, 1
    lo, hi = bounds
    if np.asarray(values).dtype.kind in "iu" and int(hi) - int(lo) + 1 <= n_bins:
        return lo - 0.5, hi + 0.5, int(hi) - int(lo) + 1
    if lo == hi:
        return lo, hi, 1
    return lo, hi, n_bins


@dataclass(frozen=True)
class CategoricalCounts:
    """Counts of one categorical sample over known categories, plus unseen and missing."""

    bins: npt.NDArray[np.int64]
    unseen: int
    missing: int
    total: int


def count_categories(series: pd.Series, categories: Sequence[JsonScalar]) -> CategoricalCounts:
    """Count a column's values per known category with one hash pass (``value_counts``).

    Args:
        series: The column.
        categories: Known categories in bin order.

    Returns:
        Counts per category, of values not in ``categories`` (unseen) and of missing values.
    """
    counts = series.value_counts(dropna=False, sort=False)
    keys = counts.index
    values = counts.to_numpy(dtype=np.int64)
    nan_mask = np.asarray(keys.isna())
    missing = int(values[nan_mask].sum())
    known = pd.Index(list(categories)) if len(categories) else pd.Index([], dtype=object)
    position = known.get_indexer(keys) if len(known) else np.full(len(keys), -1, dtype=np.intp)
    position = np.asarray(position)
    found = (position >= 0) & ~nan_mask
    bins = np.bincount(position[found], weights=values[found], minlength=len(categories)).astype(np.int64)
    unseen = int(values[~found & ~nan_mask].sum())
    return CategoricalCounts(bins=bins, unseen=unseen, missing=missing, total=len(series))


def to_json_scalar(value: Any, column: str) -> JsonScalar:
    """Convert a category value to a JSON-native scalar, or explain why it cannot be stored."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    raise DriftInputError(
        f"column {column!r} holds a {type(value).__name__} category ({value!r}) that a reference profile "
        "cannot store; cast the column to str (or declare it numeric) before profiling."
    )
