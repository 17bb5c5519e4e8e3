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
_EQ_SPAN = 14  # int8-sized spans up to this many values are counted with one compare per value
_GRID_CELLS = 4096  # cells of the fine grid in histogram_counts
_CHUNK = 65_536  # rows per block: keeps the temporaries in cache


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
    reference: npt.NDArray[Any], current: npt.NDArray[Any], bounds: tuple[Any, Any] | None = None,
    size: int | None = None,
) -> npt.NDArray[Any]:
    """``np.histogram_bin_edges(concat(reference, current), bins="sturges")`` without building the concatenation.

    Follows NumPy's own steps (outer edges from min/max, width ``ptp/(log2(n) + 1)``, width floored at 1
    for integer data, ``ceil(range/width)`` bins, ``linspace`` in the result dtype) so the edges are
    bit-identical. ``bounds`` passes the already known ``(min, max)`` of both samples together, ``size`` their
    total length when the arrays passed stand only for the dtype.
    """
    dtype = np.result_type(reference.dtype, current.dtype)
    low, high = bounds if bounds is not None else (
        min(reference.min(), current.min()), max(reference.max(), current.max())
    )
    first, last = dtype.type(low), dtype.type(high)
    size = reference.size + current.size if size is None else size
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
    """Non-zero counts per value of an integer array with a small range, else None (mixed int/float path)."""
    tally = _int_tally(values, lo, hi)
    if tally is None:
        return None
    present = np.flatnonzero(tally)
    return pd.Series(tally[present], index=pd.Index(present.astype(np.int64) + int(lo)), dtype=np.int64)


def _int_tally(values: npt.NDArray[Any], lo: Any, hi: Any) -> npt.NDArray[np.int64] | None:
    """Counts of every integer in ``[lo, hi]`` (the array's min and max), zeros included; None for a wide range.

    ``bincount`` costs about the same for any span (measured 1.6-2.1 ms per million int64 here: every increment
    is a dependent load and store), while ``count_nonzero(x == v)`` is a vectorised compare, far cheaper on an
    int8 copy. So: two values, one compare on the array; values that fit in int8 and at most
    ``_EQ_SPAN`` of them, one int8 cast and a compare per value but the last (the rest) — 0.33 ms for 3
    values, 0.69 ms for 7, 1.25 ms for 12 per million; otherwise ``bincount``.
    """
    if values.dtype.kind not in "iu" or values.size == 0:
        return None
    lo_i, hi_i = int(lo), int(hi)
    span = hi_i - lo_i + 1
    if span > max(values.size, 1 << 16):
        return None
    if span <= 2 or (span <= _EQ_SPAN and -128 <= lo_i and hi_i <= 127):
        small = values if span <= 2 or values.dtype.itemsize == 1 else values.astype(np.int8)
        counts = np.array([np.count_nonzero(small == v) for v in range(lo_i, hi_i)] + [0], dtype=np.int64)
        counts[-1] = values.size - counts.sum()
        return counts
    if lo_i >= 0 and hi_i < 2 * span and values.dtype == np.intp:
        return np.bincount(values, minlength=hi_i + 1)[lo_i:].astype(np.int64, copy=False)
    shifted = values - values.dtype.type(lo_i)
    return np.bincount(shifted.astype(np.intp, copy=False), minlength=span).astype(np.int64, copy=False)


def _bin_int_tallies(
    ref_tally: npt.NDArray[np.int64], ref_lo: int, cur_tally: npt.NDArray[np.int64], cur_lo: int,
    dtype: np.dtype[Any], missing: tuple[int, int, int, int],
) -> EvidentlyBins:
    """Evidently's binning of two integer samples from their tallies (no further pass over the rows).

    Few distinct reference values: one bin per value seen in either sample. Otherwise the sturges edges of
    both samples, and each distinct value goes to the bin ``np.histogram(x, edges)`` would put it in
    (``edges[k] ≤ v < edges[k+1]``, the last bin closed; values compared as float64, as NumPy does).
    """
    lo = min(ref_lo, cur_lo)
    hi = max(ref_lo + ref_tally.size, cur_lo + cur_tally.size) - 1
    ref_n = np.zeros(hi - lo + 1, dtype=np.int64)
    cur_n = np.zeros(hi - lo + 1, dtype=np.int64)
    ref_n[ref_lo - lo : ref_lo - lo + ref_tally.size] = ref_tally
    cur_n[cur_lo - lo : cur_lo - lo + cur_tally.size] = cur_tally
    ref_size, cur_size = int(ref_tally.sum()), int(cur_tally.sum())
    first, last = ref_lo - lo, ref_lo - lo + ref_tally.size  # the reference range [ref min, ref max]
    outside = int(cur_n[:first].sum() + cur_n[last:].sum())
    if np.count_nonzero(ref_tally) <= _DISTINCT_FOR_HISTOGRAM:
        keys = np.flatnonzero(ref_n + cur_n)
        p, q = ref_n[keys] / ref_size, cur_n[keys] / cur_size
        labels = [str(int(k) + lo) for k in keys]
        return EvidentlyBins(p, q, fill_zeroes(p), fill_zeroes(q), labels, None, *missing,
                             outside, ref_size, cur_size)
    n_total = ref_size + cur_size
    edges = sturges_edges(np.empty(0, dtype=dtype), np.empty(0, dtype=dtype), (lo, hi), size=n_total)
    values = np.arange(lo, hi + 1, dtype=np.int64 if hi <= np.iinfo(np.int64).max else np.uint64)
    slot = np.searchsorted(edges, values.astype(np.float64), side="right") - 1
    np.clip(slot, 0, edges.size - 2, out=slot)
    p = np.bincount(slot, weights=ref_n, minlength=edges.size - 1) / ref_size
    q = np.bincount(slot, weights=cur_n, minlength=edges.size - 1) / cur_size
    return EvidentlyBins(p, q, fill_zeroes(p), fill_zeroes(q), _interval_labels(edges), [float(e) for e in edges],
                         *missing, outside, ref_size, cur_size)


def _interval_labels(edges: npt.NDArray[Any]) -> list[str]:
    labels = [f"[{a:.4g}, {b:.4g})" for a, b in itertools.pairwise(edges)]
    labels[-1] = labels[-1][:-1] + "]"
    return labels


def histogram_counts(
    values: npt.NDArray[Any], edges: npt.NDArray[Any], *, skip_nonfinite: bool = False
) -> npt.NDArray[np.int64]:
    """``np.histogram(values, edges)[0]`` for finite values that all lie in ``[edges[0], edges[-1]]``, exactly.

    With ``skip_nonfinite`` NaN and ±inf are left out (no cleaned copy of the array).

    NumPy sorts the values for an array of edges. Here each value gets a slot of a fine uniform grid
    (``trunc((x - lo)·scale + shift)``, about 4096 slots) and the slots are counted with ``bincount``. The slot
    is a monotone function of ``x``, so the slots wholly below or above each edge are known from the slots of
    the edge itself and of the float just below it (computed with the same operations); only values in the
    few slots that straddle an edge are placed individually, with ``searchsorted`` on the edges. Float64
    values and edges only (else ``np.histogram``).
    """
    n = edges.size - 1
    lo, hi = edges[0], edges[-1]
    scale = float(max(n, _GRID_CELLS)) / float(hi - lo) if np.isfinite(hi - lo) else 0.0
    if values.dtype != np.float64 or edges.dtype != np.float64 or n < 1 or not scale > 0:
        finite = values[np.isfinite(values)] if skip_nonfinite and values.dtype.kind == "f" else values
        return np.histogram(finite, edges)[0].astype(np.int64)
    # With skip_nonfinite every finite value gets slot ≥ 1 (shift 1); NaN and -inf are clamped to slot 0 and
    # +inf to the slot after hi's before the cast (which is undefined for them).
    shift = 1.0 if skip_nonfinite else 0.0
    top = int(_slot_of(np.array([hi]), lo, scale, shift)[0])
    slots = top + 2 if skip_nonfinite else top + 1
    inner = edges[1:-1]
    first = _slot_of(inner, lo, scale, shift)  # slots < first[k] hold only values below edge k
    below = _slot_of(np.maximum(np.nextafter(inner, -np.inf), lo), lo, scale, shift)  # slots > below[k]: ≥ it
    below = np.maximum(below, first - 1)  # (a slot skipped between the two holds no float at all)
    straddle = np.zeros(slots + 1, dtype=np.int64)
    np.add.at(straddle, first, 1)
    np.add.at(straddle, below + 1, -1)
    ambiguous = np.cumsum(straddle[:-1]) > 0
    finite_slot = np.ones(slots, dtype=bool)
    if skip_nonfinite:
        finite_slot[[0, -1]] = False
    bin_of_slot = np.searchsorted(below, np.arange(slots), side="left")  # edges k with below[k] < slot
    slot_counts = np.zeros(slots, dtype=np.int64)
    picked: list[npt.NDArray[np.float64]] = []
    check = bool(ambiguous.any())
    buf_f = np.empty(min(_CHUNK, values.size), dtype=np.float64)
    buf_i = np.empty(min(_CHUNK, values.size), dtype=np.intp)
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        f, j = buf_f[: chunk.size], buf_i[: chunk.size]
        np.subtract(chunk, lo, out=f)
        f *= scale
        if skip_nonfinite:
            f += shift
            np.fmax(f, 0.0, out=f)
            np.fmin(f, float(top + 1), out=f)
        j[...] = f
        slot_counts += np.bincount(j, minlength=slots)
        if check:
            hit = ambiguous[j]
            if hit.any():
                picked.append(chunk[hit])
    plain = finite_slot & ~ambiguous
    counts = np.bincount(bin_of_slot[plain], weights=slot_counts[plain], minlength=n).astype(np.int64)
    if picked:
        exact = np.searchsorted(edges, np.concatenate(picked), side="right") - 1
        np.clip(exact, 0, n - 1, out=exact)
        counts += np.bincount(exact, minlength=n)
    return counts


def _slot_of(x: npt.NDArray[np.float64], lo: Any, scale: float, shift: float) -> npt.NDArray[np.intp]:
    f = np.subtract(x, lo)
    f *= scale
    if shift:
        f += shift
    out = np.empty(x.size, dtype=np.intp)
    out[...] = f
    return out


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


@dataclass(frozen=True)
class _FiniteStats:
    size: int  # finite values
    nan: int
    inf: int
    low: Any  # min and max of the finite values (None when there are none)
    high: Any
    outside: int  # finite values outside the ``inside`` range given to _finite_stats


def _finite_stats(values: npt.NDArray[np.floating[Any]], inside: tuple[Any, Any] | None = None) -> _FiniteStats:
    """Counts of finite, NaN and ±inf values, the finite min/max, and finite values outside ``inside``.

    Block by block, without a cleaned copy: ``fmin``/``fmax`` reductions skip NaN; only a block holding ±inf
    is compressed to its finite values; a block is compared with ``inside`` only when its min or max is out.
    """
    size = nan = outside = 0
    low = high = None
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        k = int(np.count_nonzero(np.isfinite(chunk)))
        if k < chunk.size:
            chunk_nan = int(np.count_nonzero(np.isnan(chunk)))
            if chunk_nan + k < chunk.size:  # ±inf in this block
                chunk = chunk[np.isfinite(chunk)]
            nan += chunk_nan
        if k:
            lo, hi = np.fmin.reduce(chunk), np.fmax.reduce(chunk)
            low = lo if low is None or lo < low else low
            high = hi if high is None or hi > high else high
            if inside is not None:  # NaN compares false: only finite values are counted
                if lo < inside[0]:
                    outside += int(np.count_nonzero(chunk < inside[0]))
                if hi > inside[1]:
                    outside += int(np.count_nonzero(chunk > inside[1]))
        size += k
    return _FiniteStats(size, nan, values.size - size - nan, low, high, outside)


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
    if ref_values.dtype == np.float64 and cur_values.dtype == np.float64:
        fast = _bin_float64(ref_values, cur_values)
        if fast is not None:
            return fast
    ref, ref_nan, ref_inf = _clean(ref_values)
    cur, cur_nan, cur_inf = _clean(cur_values)
    if ref.size == 0 or cur.size == 0:
        empty = np.zeros(0)
        return EvidentlyBins(empty, empty, empty, empty, [], None, ref_nan, ref_inf, cur_nan, cur_inf, 0,
                             ref.size, cur.size)
    ref_min, ref_max = ref.min(), ref.max()
    cur_min, cur_max = cur.min(), cur.max()
    ref_tally = _int_tally(ref, ref_min, ref_max)
    cur_tally = _int_tally(cur, cur_min, cur_max) if ref_tally is not None else None
    if ref_tally is not None and cur_tally is not None:  # integers on a small range: tallies say everything
        return _bin_int_tallies(ref_tally, int(ref_min), cur_tally, int(cur_min),
                                np.result_type(ref.dtype, cur.dtype), (ref_nan, ref_inf, cur_nan, cur_inf))
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
    p = histogram_counts(ref, edges) / ref.size
    q = histogram_counts(cur, edges) / cur.size
    return EvidentlyBins(p, q, fill_zeroes(p), fill_zeroes(q), _interval_labels(edges), [float(e) for e in edges],
                         ref_nan, ref_inf, cur_nan, cur_inf, outside, ref.size, cur.size)


def _bin_float64(ref: npt.NDArray[np.float64], cur: npt.NDArray[np.float64]) -> EvidentlyBins | None:
    """The histogram case of two float64 samples without cleaned copies; None when another case applies."""
    prefix = ref[:_SAMPLE_FOR_DISTINCT]
    if np.unique(prefix[np.isfinite(prefix)]).size <= _DISTINCT_FOR_HISTOGRAM:
        return None  # maybe few distinct values: the general path decides on the cleaned sample
    rs = _finite_stats(ref)
    cs = _finite_stats(cur, (rs.low, rs.high))
    if rs.size == 0 or cs.size == 0:
        return None
    edges = sturges_edges(ref[:0], cur[:0], (min(rs.low, cs.low), max(rs.high, cs.high)), size=rs.size + cs.size)
    p = histogram_counts(ref, edges, skip_nonfinite=bool(rs.nan or rs.inf)) / rs.size
    q = histogram_counts(cur, edges, skip_nonfinite=bool(cs.nan or cs.inf)) / cs.size
    return EvidentlyBins(p, q, fill_zeroes(p), fill_zeroes(q), _interval_labels(edges), [float(e) for e in edges],
                         rs.nan, rs.inf, cs.nan, cs.inf, cs.outside, rs.size, cs.size)


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
