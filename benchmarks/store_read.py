"""What do the store's read checks cost? Time ``PartitionStore.read`` of one partition, warm, best of N.

Run from the repository root::

    .venv/bin/python benchmarks/store_read.py                  # 1,000 and 1,000,000 rows, local store
    .venv/bin/python benchmarks/store_read.py --rows 1000 --repeat 50

Each partition has the shape of a feature day (ints, floats, a string and a UTC timestamp column). It prints,
per size: ``write`` (a re-write of the day, best of 5 at most), ``read`` (manifest + footer checks + data),
``read`` of two columns, and, when the store has them, ``read(verify_hash=True)`` and ``verify`` of the day
(the content hash recomputed). The ``include/`` folder of this checkout is imported, so running the script
from another checkout measures that checkout's store. The script always exits 0: it is a report.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from loopline.store import PartitionStore  # noqa: E402


def day_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "flight_id": np.arange(rows, dtype="int64"),
        "dep_delay": rng.normal(10, 30, rows),
        "distance": rng.integers(80, 5000, rows),
        "carrier": pd.Series(rng.choice(["AA", "B6", "DL", "EV", "UA"], rows), dtype="string"),
        "sched_dep": pd.Timestamp("2013-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 86400, rows), "s"),
        "label": rng.integers(0, 2, rows),
    })


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[1_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=0, help="default: 30 below 100k rows, 5 above")
    args = parser.parse_args()
    has_hash_read = "verify_hash" in inspect.signature(PartitionStore.read).parameters
    with tempfile.TemporaryDirectory() as tmp:
        store = PartitionStore(Path(tmp).as_uri())
        for rows in args.rows:
            repeat = args.repeat or (30 if rows < 100_000 else 5)
            frame = day_frame(rows)
            wrote = best(lambda: store.write("bench", "1", "2013-01-01", frame), min(repeat, 5))  # noqa: B023
            line = [f"{rows:>9,} rows: write {wrote:8.1f} ms",
                    f"read {best(lambda: store.read('bench', '1', '2013-01-01'), repeat):8.2f} ms",
                    "read 2 cols "
                    f"{best(lambda: store.read('bench', '1', '2013-01-01', ['flight_id', 'label']), repeat):8.2f} ms"]
            if has_hash_read:
                hashed = best(lambda: store.read("bench", "1", "2013-01-01", verify_hash=True), repeat)  # type: ignore[call-arg]
                line.append(f"read+hash {hashed:8.2f} ms")
            if hasattr(store, "verify"):
                line.append(f"verify {best(lambda: store.verify('bench'), repeat):8.2f} ms")
            print(", ".join(line), f"(best of {repeat})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
