"""Would a compiled counting kernel (numba) pay for itself in the drift engine's ``evidently`` mode?

Run from the repository root::

    .venv/bin/python benchmarks/drift_kernels.py            # the drift benchmark's columns, 1M + 1M rows
    .venv/bin/python benchmarks/drift_kernels.py --rows 200000

The slowest columns of ``benchmarks/drift.py`` per row are integers with a few dozen values and floats with
NaN and ±inf, where Loopline's time is NumPy's floor (a min/max and a ``bincount``; a few vectorised passes per
64k block). This script measures the alternative that was not taken: numba kernels doing the same binning
(a fused min/max; a tally into four interleaved tables; finite-stats and an exact histogram on the same edges)
in a side virtualenv (``.loopline/bench/numba-venv``, never a project dependency), against Loopline's code on
the same arrays. It prints, in one run:

* per column (reference + current sample binned): Loopline (NumPy) ms vs numba ms, warm (best of 7);
* numba's cold start in a fresh process: ``import numba``, the first call of the kernels compiled from scratch,
  and the same first call loaded from numba's on-disk cache;
* the break-even: how many such columns one process must bin before the cached cold start is repaid.

Every kernel's counts are checked against NumPy's (``bincount``; ``histogram`` on the finite values with
Loopline's edges) before anything is timed. The script always exits 0: it is a report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from drift import _ensure_venv, make_data  # noqa: E402  (the drift benchmark's data and side venvs)
from loopline.drift.evidently_mode import bin_evidently  # noqa: E402

NUMBA_VENV = ROOT / ".loopline" / "bench" / "numba-venv"
COLUMNS = {"int_3": "int", "int_2": "int", "num_2": "float", "num_0": "float"}
REPEAT = 7

KERNELS = textwrap.dedent(
    """
    import numpy as np
    import numba as nb

    @nb.njit(cache=True, nogil=True)
    def int_minmax(x):
        lo = x[0]
        hi = x[0]
        for v in x:
            if v < lo:
                lo = v
            if v > hi:
                hi = v
        return lo, hi

    @nb.njit(cache=True, nogil=True)
    def int_tally(x, lo, span):
        # four tables: consecutive increments of the same value do not wait for each other
        t = np.zeros((4, span), np.int64)
        m = x.size - x.size % 4
        for i in range(0, m, 4):
            t[0, x[i] - lo] += 1
            t[1, x[i + 1] - lo] += 1
            t[2, x[i + 2] - lo] += 1
            t[3, x[i + 3] - lo] += 1
        for i in range(m, x.size):
            t[0, x[i] - lo] += 1
        return t.sum(axis=0)

    @nb.njit(cache=True, nogil=True)
    def float_stats(x):
        n_nan = 0
        n_inf = 0
        lo = np.inf
        hi = -np.inf
        for v in x:
            if v - v == 0.0:  # finite
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
            elif v != v:
                n_nan += 1
            else:
                n_inf += 1
        return x.size - n_nan - n_inf, n_nan, lo, hi

    @nb.njit(cache=True, nogil=True)
    def float_hist(x, edges):
        # np.histogram(x[finite], edges): edges[k] <= v < edges[k+1], the last bin closed
        n = edges.size - 1
        lo = edges[0]
        hi = edges[-1]
        scale = n / (hi - lo)
        t = np.zeros((4, n), np.int64)
        j = 0
        for v in x:
            if not (v >= lo and v <= hi):
                continue
            k = min(int((v - lo) * scale), n - 1)
            while k > 0 and v < edges[k]:
                k -= 1
            while k < n - 1 and v >= edges[k + 1]:
                k += 1
            t[j & 3, k] += 1
            j += 1
        return t.sum(axis=0)
    """
)

SIDE = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import numba
    t_import = time.perf_counter() - t0
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import loopline_kernels as k

    data_dir, columns, repeat, mode = sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]

    def bin_int(r, c):
        rl, rh = k.int_minmax(r)
        cl, ch = k.int_minmax(c)
        return k.int_tally(r, rl, rh - rl + 1), k.int_tally(c, cl, ch - cl + 1), (rl, cl)

    def bin_float(r, c, edges):
        k.float_stats(r)
        k.float_stats(c)
        return k.float_hist(r, edges), k.float_hist(c, edges)

    tiny_i, tiny_f = np.arange(4, dtype=np.int64), np.arange(4.0)
    t0 = time.perf_counter()
    bin_int(tiny_i, tiny_i)
    bin_float(tiny_f, tiny_f, np.linspace(0.0, 3.0, 3))
    t_first = time.perf_counter() - t0
    out = {"numba": numba.__version__, "numpy": np.__version__, "import_s": t_import, "first_call_s": t_first}
    if mode == "time":
        ms, ok = {}, {}
        for name, kind in columns.items():
            r, c = np.load(f"{data_dir}/{name}_ref.npy"), np.load(f"{data_dir}/{name}_cur.npy")
            if kind == "int":
                pr, pc, (rl, cl) = bin_int(r, c)
                ok[name] = bool((pr == np.bincount(r - rl)).all() and (pc == np.bincount(c - cl)).all())
                fn = lambda: bin_int(r, c)
            else:
                edges = np.load(f"{data_dir}/{name}_edges.npy")
                pr, pc = bin_float(r, c, edges)
                ok[name] = bool((pr == np.histogram(r[np.isfinite(r)], edges)[0]).all()
                                and (pc == np.histogram(c[np.isfinite(c)], edges)[0]).all())
                fn = lambda: bin_float(r, c, edges)
            best = float("inf")
            for _ in range(repeat):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            ms[name] = best * 1e3
        out.update(ms=ms, counts_match=ok)
    print(json.dumps(out))
    """
)


def best_ms(fn: object, repeat: int = REPEAT) -> float:
    """Best wall time of ``repeat`` calls, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def main() -> int:
    """Run the comparison and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of reference and current")
    args = parser.parse_args()
    load_before = os.getloadavg()
    print(f"generating the drift benchmark's data ({args.rows:,} + {args.rows:,} rows) …", flush=True)
    ref, cur, _ = make_data(args.rows)
    python = _ensure_venv(NUMBA_VENV, "numba", f"numpy=={np.__version__}")
    with tempfile.TemporaryDirectory(prefix="loopline-kernels-") as tmp:
        data, code, cache = Path(tmp) / "data", Path(tmp) / "code", Path(tmp) / "numba-cache"
        for d in (data, code, cache):
            d.mkdir()
        ref.to_parquet(data / "ref.parquet")  # columns of a Parquet-read frame, as in benchmarks/drift.py
        cur.to_parquet(data / "cur.parquet")
        ref, cur = pd.read_parquet(data / "ref.parquet"), pd.read_parquet(data / "cur.parquet")
        loopline_ms = {}
        for name in COLUMNS:
            bins = bin_evidently(ref[name], cur[name], "numeric", name)
            np.save(data / f"{name}_ref.npy", ref[name].to_numpy())
            np.save(data / f"{name}_cur.npy", cur[name].to_numpy())
            if bins.edges is not None:
                np.save(data / f"{name}_edges.npy", np.asarray(bins.edges, dtype=np.float64))
            loopline_ms[name] = best_ms(lambda n=name: bin_evidently(ref[n], cur[n], "numeric", n))
        (code / "loopline_kernels.py").write_text(KERNELS)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}

        def side(mode: str) -> dict[str, object]:
            done = subprocess.run([str(python), "-c", SIDE, str(code), str(data), json.dumps(COLUMNS), str(REPEAT),
                                   mode], env=env, check=True, capture_output=True, text=True)
            return json.loads(done.stdout.strip().splitlines()[-1])

        cold = side("cold")  # empty cache: compiles
        cached = [side("cold") for _ in range(3)]  # loads from the cache
        warm = side("time")
    import_s = min(float(c["import_s"]) for c in cached)  # type: ignore[arg-type]
    first_cached = min(float(c["first_call_s"]) for c in cached)  # type: ignore[arg-type]
    ms: dict[str, float] = warm["ms"]  # type: ignore[assignment]
    print(f"\nnumba {warm['numba']} (numpy {warm['numpy']}) vs Loopline's NumPy code, {args.rows:,} + {args.rows:,} "
          f"rows per column, best of {REPEAT}; reference and current binned as bin_evidently does\n")
    print(f"{'column':<8} {'kind':<6} {'Loopline (NumPy) ms':>20} {'numba ms':>9} {'saved ms':>9}  counts match")
    saved = []
    for name, kind in COLUMNS.items():
        s = loopline_ms[name] - ms[name]
        saved.append(s)
        print(f"{name:<8} {kind:<6} {loopline_ms[name]:>20.2f} {ms[name]:>9.2f} {s:>9.2f}  "
              f"{warm['counts_match'][name]}")  # type: ignore[index]
    per_column = sum(saved) / len(saved)
    cold_cached = import_s + first_cached
    print(f"\nnumba cold start in a fresh process: import {import_s:.2f} s; first call compiling the kernels "
          f"{float(cold['first_call_s']):.2f} s (once per cache); first call from the on-disk cache "  # type: ignore[arg-type]
          f"{first_cached:.2f} s")
    print(f"break-even: a process must bin {cold_cached * 1e3 / per_column:,.0f} such columns of this size "
          f"({cold_cached:.2f} s cold start / {per_column:.2f} ms saved per column) before numba pays for itself")
    print("load average (1, 5, 15 min): at start {:.2f} {:.2f} {:.2f}, at end {:.2f} {:.2f} {:.2f} on {} CPUs".format(
        *load_before, *os.getloadavg(), os.cpu_count() or 0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
