"""``evidently`` binning mode: the ``psi``, ``kl_div`` and ``jensenshannon`` scores of an Evidently 0.7 report.

Reproduced behaviour (``evidently.legacy.calculations``: ``data_drift.get_one_column_drift`` and
``stattests.utils.get_binned_data``, read from the 0.7.x source and re-implemented here):

1. Each sample drops ±inf and NaN first; an empty sample makes Evidently raise — here the feature gets
   undefined (NaN) scores, severity ``"unknown"`` and a note instead, and missing/inf rates stay reported.
2. A numeric feature whose *reference* has more than 20 distinct values is binned with NumPy's
   ``"sturges"`` edges over the concatenation of both samples (``n_bins`` is ignored, as in Evidently);
   every other feature gets one bin per distinct value seen in either sample.
3. Proportions are counts divided by the sample size. For PSI and KL (not JS), empty bins of each sample are
   filled with ``min(non-zero)/10**6`` when that minimum is ≤ 0.0001, else with 0.0001 (the filled vectors no
   longer sum to 1; KL renormalises them as ``scipy.stats.entropy`` does, PSI does not).
4. PSI is ``Σ (p − q)·ln(p/q)``, KL is ``scipy.stats.entropy(p, q)`` (natural log), JS is
   ``scipy.spatial.distance.jensenshannon(p, q)`` (natural log, a distance) on the unfilled proportions.

Differences that remain are floating-point summation order only (Evidently orders bins by set iteration;
here they are sorted), far below 1e-9.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loopline.drift.binning import NUMERIC, numeric_values

_DISTINCT_FOR_HISTOGRAM = 20  # Evidently: numeric with more distinct reference values → sturges histogram
_SAMPLE_FOR_DISTINCT = 4096


@dataclass(frozen=True)
class EvidentlyBins:
    """Both samples binned the Evidently way.

    Attributes:
        reference: Raw reference proportions (count / cleaned size).
        current: Raw current proportions.
        reference_filled: Reference proportions with empty bins filled (PSI, KL).
        current_filled: Current proportions with empty bins filled.
        labels: Bin labels (the distinct values, or the histogram intervals).
        edges: Histogram edges, or None for value bins.
        ref_missing: NaN count in the reference before cleaning.
        ref_inf: ±inf count in the reference.
        cur_missing: NaN count in the current sample.
        cur_inf: ±inf count in the current sample.
        outside: Current values outside the reference range (numeric) or not seen in the reference.
        ref_size: Reference size after cleaning.
        cur_size: Current size after cleaning.
    """

    reference: npt.NDArray[np.float64]
    current: npt.NDArray[np.float64]
    reference_filled: npt.NDArray[np.float64]
    current_filled: npt.NDArray[np.float64]
    labels: list[str]
    edges: list[float] | None
    ref_missing: int
    ref_inf: int
    cur_missing: int
    cur_inf: int
    outside: int
    ref_size: int
    cur_size: int


def fill_zeroes(proportions: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Evidently's empty-bin filling: zeros become ``min(non-zero)/1e6`` if that is ≤ 1e-4, else 1e-4."""
    out = proportions.astype(np.float64, copy=True)
    nonzero = out[out != 0]
    if nonzero.size == 0:
        return out
    smallest = float(nonzero.min())
    out[out == 0] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def sturges_edges(
    reference: npt.NDArray[Any], current: npt.NDArray[Any], bounds: tuple[Any, Any] | None = None
) -> npt.NDArray[Any]:
    """``np.histogram_bin_edges(concat(reference, current), bins="sturges")`` without building the concatenation.

    Follows NumPy's own steps (outer edges from min/max, width ``ptp/(log2(n) + 1)``, width floored at 1
    for integer data, ``ceil(range/width)`` bins, ``linspace`` in the result dtype) so the edges are
    bit-identical. ``bounds`` passes the already known ``(min, max)`` of both samples together.
    """
    dtype = np.result_type(reference.dtype, current.dtype)
    low, high = bounds if bounds is not None else (
        min(reference.min(), current.min()), max(reference.max(), current.max())
    )
    first, last = dtype.type(low), dtype.type(high)
    size = reference.size + current.size
    if first == last:
        first, last = first - 0.5, last + 0.5
    delta = _unsigned_subtract(last, first)
    width = delta / (np.log2(size) + 1.0)
    if width:
        if np.issubdtype(dtype, np.integer) and width < 1:
            width = 1
        n_equal = int(np.ceil(delta / width))
    else:
        n_equal = 1
    bin_type = np.result_type(first, last, np.empty(0, dtype=dtype))
    if np.issubdtype(bin_type, np.integer):
        bin_type = np.result_type(bin_type, float)
    return np.linspace(first, last, n_equal + 1, endpoint=True, dtype=bin_type)


def _unsigned_subtract(a: Any, b: Any) -> Any:
    dt = np.result_type(a, b)
    unsigned = {np.byte: np.ubyte, np.short: np.ushort, np.intc: np.uintc, np.int_: np.uint,
                np.longlong: np.ulonglong}.get(dt.type)
    if unsigned is None:
        return np.subtract(a, b, dtype=dt)
    return np.subtract(np.asarray(a, dtype=dt), np.asarray(b, dtype=dt), casting="unsafe", dtype=unsigned)


def _more_distinct_than(values: npt.NDArray[Any], k: int) -> bool:
    # A prefix with more than k distinct values proves it; otherwise count on the whole array (hash).
    if np.unique(values[:_SAMPLE_FOR_DISTINCT]).size > k:
        return True
    return int(pd.unique(values).size) > k


def _int_counts(values: npt.NDArray[Any], lo: Any, hi: Any) -> pd.Series | None:
    """Non-zero counts per value of an integer array with a small range (bincount), else None."""
    if values.dtype.kind not in "iu" or values.size == 0 or int(hi) - int(lo) > max(values.size, 1 << 16):
        return None
    tally = np.bincount((values - lo).astype(np.intp, copy=False))
    present = np.flatnonzero(tally)
    return pd.Series(tally[present], index=pd.Index(present.astype(np.int64) + int(lo)), dtype=np.int64)


def bin_evidently(reference: pd.Series, current: pd.Series, kind: str, column: str) -> EvidentlyBins:
    """Bin two samples as Evidently's ``get_binned_data`` does after the report's NaN/inf cleaning.

    Args:
        reference: Reference column.
        current: Current column.
        kind: ``"numeric"`` or ``"categorical"`` (Evidently's ColumnType).
        column: Name, for errors.

    Returns:
        The binned samples; empty proportions when a sample is empty after cleaning.
    """
    if kind == NUMERIC:
        return _bin_numeric(numeric_values(reference, column), numeric_values(current, column))
    return _bin_values(_category_counts(reference), _category_counts(current))


def _clean(values: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], int, int]:
    if values.dtype.kind != "f":
        return values, 0, 0
    finite = np.isfinite(values)
    n_bad = values.size - int(np.count_nonzero(finite))
    if n_bad == 0:
        return values, 0, 0
    n_nan = int(np.count_nonzero(np.isnan(values)))
    return values[finite], n_nan, n_bad - n_nan


def _bin_numeric(ref_values: npt.NDArray[Any], cur_values: npt.NDArray[Any]) -> EvidentlyBins:
    ref, ref_nan, ref_inf = _clean(ref_values)
    cur, cur_nan, cur_inf = _clean(cur_values)
    if ref.size == 0 or cur.size == 0:
        empty = np.zeros(0)
        return EvidentlyBins(empty, empty, empty, empty, [], None, ref_nan, ref_inf, cur_nan, cur_inf, 0,
                             ref.size, cur.size)
    ref_min, ref_max = ref.min(), ref.max()
    cur_min, cur_max = cur.min(), cur.max()
    outside = int(np.count_nonzero((cur < ref_min) | (cur > ref_max)))
    ref_counts = _int_counts(ref, ref_min, ref_max)
    few = ref_counts.size <= _DISTINCT_FOR_HISTOGRAM if ref_counts is not None else (
        not _more_distinct_than(ref, _DISTINCT_FOR_HISTOGRAM)
    )
    if few:
        if ref_counts is None:
            ref_counts = pd.Series(ref).value_counts(sort=False)
        cur_counts = _int_counts(cur, cur_min, cur_max)
        if cur_counts is None:
            cur_counts = pd.Series(cur).value_counts(sort=False)
        bins = _bin_values(ref_counts, cur_counts)
        return EvidentlyBins(bins.reference, bins.current, bins.reference_filled, bins.current_filled,
                             bins.labels, None, ref_nan, ref_inf, cur_nan, cur_inf, outside, ref.size, cur.size)
    edges = sturges_edges(ref, cur, (min(ref_min, cur_min), max(ref_max, cur_max)))
    # np.histogram(x, edges) sorts; the uniform-bin path with the same (lo, hi, n) builds the same edges and
    # corrects each index against them, so the counts are identical at a fraction of the cost.
    n_edges, bounds = edges.size - 1, (edges[0], edges[-1])
    p = np.histogram(ref, bins=n_edges, range=bounds)[0] / ref.size
    q = np.histogram(cur, bins=n_edges, range=bounds)[0] / cur.size
    labels = [f"[{a:.4g}, {b:.4g})" for a, b in itertools.pairwise(edges)]
    labels[-1] = labels[-1][:-1] + "]"
    return EvidentlyBins(p, q, fill_zeroes(p), fill_zeroes(q), labels, [float(e) for e in edges],
                         ref_nan, ref_inf, cur_nan, cur_inf, outside, ref.size, cur.size)


@dataclass(frozen=True)
class _Counts:
    counts: pd.Series
    missing: int
    inf: int


def _fast_value_counts(series: pd.Series) -> tuple[pd.Series, int] | None:
    """Counts of non-null values and the null count, by a cheaper route than a hash ``value_counts``.

    Booleans are counted with ``count_nonzero``. Returns None when no fast route applies (a pyarrow
    ``dictionary_encode`` + ``bincount`` route for strings measured no faster than pandas' hash).
    """
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "b":
        values = series.to_numpy()
        n_true = int(np.count_nonzero(values))
        counts = pd.Series([values.size - n_true, n_true], index=pd.Index([False, True]), dtype=np.int64)
        return counts[counts > 0], 0
    return None


def _category_counts(series: pd.Series) -> _Counts:
    fast = _fast_value_counts(series)
    if fast is not None:
        return _Counts(fast[0], fast[1], 0)
    counts = series.value_counts(dropna=False, sort=False)
    if isinstance(counts.index, pd.CategoricalIndex):  # unobserved categories are not values: drop them
        counts = counts[counts > 0]
        counts.index = pd.Index(np.asarray(counts.index))
    index = counts.index
    nan = np.asarray(index.isna())
    inf = np.zeros(len(index), dtype=bool)
    if index.dtype == object or index.dtype.kind == "f":
        inf = np.asarray([isinstance(v, float | np.floating) and np.isinf(v) for v in index], dtype=bool)
    keep = ~(nan | inf)
    return _Counts(counts[keep], int(counts[nan].sum()), int(counts[inf].sum()))


def _bin_values(ref: pd.Series | _Counts, cur: pd.Series | _Counts) -> EvidentlyBins:
    ref_c = ref if isinstance(ref, _Counts) else _Counts(ref, 0, 0)
    cur_c = cur if isinstance(cur, _Counts) else _Counts(cur, 0, 0)
    ref_size, cur_size = int(ref_c.counts.sum()), int(cur_c.counts.sum())
    keys = ref_c.counts.index.union(cur_c.counts.index)
    ref_n = ref_c.counts.reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
    cur_n = cur_c.counts.reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
    seen = (ref_n > 0) | (cur_n > 0)
    if not seen.all():
        keys, ref_n, cur_n = keys[seen], ref_n[seen], cur_n[seen]
    outside = int(cur_n[ref_n == 0].sum())
    if ref_size == 0 or cur_size == 0:
        empty = np.zeros(0)
        return EvidentlyBins(empty, empty, empty, empty, [], None, ref_c.missing, ref_c.inf, cur_c.missing,
                             cur_c.inf, outside, ref_size, cur_size)
    p, q = ref_n / ref_size, cur_n / cur_size
    return EvidentlyBins(p, q, fill_zeroes(p), fill_zeroes(q), [str(k) for k in keys], None, ref_c.missing,
                         ref_c.inf, cur_c.missing, cur_c.inf, outside, ref_size, cur_size)
