"""Batch scoring: stream a features partition through a model into a predictions partition.

Memory stays bounded by the batch size: the partition is read one record batch at a time, scored, and
written out before the next batch is read. Every prediction row carries the model name and version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from loopline.features import FEATURES_DATASET, categorical_columns, model_columns
from loopline.store import Manifest, PartitionStore, as_day

if TYPE_CHECKING:
    import pandas as pd

PREDICTIONS_DATASET = "predictions"
PREDICTION_KEYS = ("flight_id", "ds", "scheduled_departure_utc")


def score_batches(
    model: Any,
    batches: Iterator[Any],
    version: str,
    model_name: str,
    model_version: str,
) -> Iterator[pd.DataFrame]:
    """Score record batches of a features partition; yields one predictions frame per batch."""
    import pandas as pd

    cats = categorical_columns(version)
    produced = False
    for batch in batches:
        produced = True
        frame = batch.to_pandas()
        x = frame[model_columns(version)]
        for col in cats:
            x[col] = x[col].astype(object).where(x[col].notna(), None)
        scores = model.predict_proba(x)[:, 1] if len(x) else []
        out = frame[list(PREDICTION_KEYS)].copy()
        out["score"] = pd.Series(scores, index=out.index, dtype="float64")
        out["model_name"] = pd.Series(model_name, index=out.index, dtype="string")
        out["model_version"] = pd.Series(str(model_version), index=out.index, dtype="string")
        out["feature_set_version"] = pd.Series(version, index=out.index, dtype="string")
        yield out
    if not produced:  # an empty features partition still gets an (empty) predictions partition
        empty = {k: pd.Series(dtype="string") for k in PREDICTION_KEYS}
        empty["scheduled_departure_utc"] = pd.Series(dtype="datetime64[us, UTC]")
        yield pd.DataFrame({**empty, "score": pd.Series(dtype="float64"),
                            "model_name": pd.Series(dtype="string"), "model_version": pd.Series(dtype="string"),
                            "feature_set_version": pd.Series(dtype="string")})


def score_batches_concurrently(
    model: Any,
    batches: Iterator[Any],
    version: str,
    model_name: str,
    model_version: str,
    workers: int,
) -> Iterator[pd.DataFrame]:
    """:func:`score_batches` on ``workers`` threads, one OpenMP thread each, output in input order.

    Why: HistGradientBoosting's ``predict_proba`` opens one OpenMP fork/join barrier per tree per call, so
    scoring many small batches with two OpenMP threads spends most of its CPU busy-waiting at barriers
    (measured by ``benchmarks/scoring.py``: about half the CPU time went there). One OpenMP thread per batch
    and one batch per worker removes the barriers; prediction releases the GIL, so threads run in parallel.
    At most ``workers`` batches are in flight, which bounds memory.
    """
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    limits: list[Any] = []

    def init() -> None:
        limits.append(threadpool_limits(1, user_api="openmp"))  # per thread; keep a reference alive

    def one(batch: Any) -> pd.DataFrame:
        return next(score_batches(model, iter([batch]), version, model_name, model_version))

    pending: deque[Future[pd.DataFrame]] = deque()
    submitted = False
    with ThreadPoolExecutor(max_workers=workers, initializer=init) as pool:
        for batch in batches:
            submitted = True
            pending.append(pool.submit(one, batch))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    if not submitted:  # an empty features partition still gets an (empty) predictions partition
        yield from score_batches(model, iter(()), version, model_name, model_version)


def score_partition(
    store: PartitionStore,
    ds: str | dt.date,
    model: Any,
    *,
    version: str,
    model_name: str,
    model_version: str,
    batch_rows: int = 65_536,
    workers: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Manifest:
    """Score the features partition of ``ds`` and write (or replace) its predictions partition.

    ``workers`` threads score batches concurrently (default: the CPU count); 1 scores in the calling thread.
    """
    import os

    day = as_day(ds)
    columns = list(PREDICTION_KEYS) + model_columns(version)
    batches = store.iter_batches(FEATURES_DATASET, version, day, batch_rows, columns=columns)
    meta = {"model_name": model_name, "model_version": str(model_version), **(extra or {})}
    n = workers or os.cpu_count() or 1
    scored = (score_batches(model, batches, version, model_name, model_version) if n == 1 else
              score_batches_concurrently(model, batches, version, model_name, model_version, n))
    return store.write_batches(PREDICTIONS_DATASET, version, day, scored, extra=meta)
