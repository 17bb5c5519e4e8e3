"""Batch scoring: stream a features partition through a model into a predictions partition.

Memory stays bounded by the batch size: the partition is read one record batch at a time, scored, and
written out before the next batch is read. Every prediction row carries the model name and version.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopline.store import Manifest, PartitionStore, as_day

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Scored:
    """What scoring needs to know about a model's data: inputs, keys, the task's prediction call and where the
    features are read from and the predictions written to (``loopline.steps.scored_spec`` of a project model)."""

    columns: tuple[str, ...]
    categorical: tuple[str, ...]
    keys: tuple[str, ...]
    task: str
    features_dataset: str
    predictions_dataset: str


def score_batches(
    model: Any,
    batches: Iterator[Any],
    version: str,
    model_name: str,
    model_version: str,
    scored: Scored,
    *,
    empty_keys: pd.DataFrame | None = None,
) -> Iterator[pd.DataFrame]:
    """Score record batches of a features partition; yields one predictions frame per batch.

    The ``score`` column holds the task's prediction: the positive-class probability of a binary classifier,
    the predicted value of a regression. Without batches one empty predictions frame is yielded, its key columns
    typed like ``empty_keys`` (the features partition's keys) or as text.
    """
    import pandas as pd

    from loopline.tasktypes import task_type

    spec = scored
    task = task_type(spec.task)
    produced = False
    key_dtypes: dict[str, Any] = {}
    for batch in batches:
        produced = True
        frame = batch.to_pandas()
        x = frame[list(spec.columns)]
        for col in spec.categorical:
            x[col] = x[col].astype(object).where(x[col].notna(), None)
        scores = task.predict(model, x)
        out = frame[list(spec.keys)].copy()
        key_dtypes = {k: out[k].dtype for k in spec.keys}
        out["score"] = pd.Series(scores, index=out.index, dtype="float64")
        out["model_name"] = pd.Series(model_name, index=out.index, dtype="string")
        out["model_version"] = pd.Series(str(model_version), index=out.index, dtype="string")
        out["feature_set_version"] = pd.Series(version, index=out.index, dtype="string")
        yield out
    if not produced:  # an empty features partition still gets an (empty) predictions partition
        if empty_keys is not None:
            key_dtypes = {k: empty_keys[k].dtype for k in spec.keys if k in empty_keys.columns}
        empty = {k: pd.Series(dtype=key_dtypes.get(k, "string")) for k in spec.keys}
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
    scored: Scored,
    *,
    empty_keys: pd.DataFrame | None = None,
) -> Iterator[pd.DataFrame]:
    """:func:`score_batches` on ``workers`` threads, one OpenMP thread each, output in input order.

    Why: HistGradientBoosting's ``predict_proba`` opens one OpenMP fork/join barrier per tree per call, so
    scoring many small batches with two OpenMP threads spends most of its CPU busy-waiting at barriers
    (measured by ``benchmarks/scoring.py``: about half the CPU time went there). One OpenMP thread per batch
    and one batch per worker removes the barriers; prediction releases the GIL, so threads run in parallel.
    At most ``workers`` batches are being scored or waiting to be written at once, which bounds memory.
    """
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    limits: list[Any] = []

    def init() -> None:
        limits.append(threadpool_limits(1, user_api="openmp"))  # per thread; keep a reference alive

    def one(batch: Any) -> pd.DataFrame:
        return next(score_batches(model, iter([batch]), version, model_name, model_version, scored))

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
        yield from score_batches(model, iter(()), version, model_name, model_version, scored, empty_keys=empty_keys)


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
    scored: Scored,
) -> Manifest:
    """Score the features partition of ``ds`` and write (or replace) its predictions partition.

    ``workers`` threads score batches concurrently (default: the CPU count); 1 scores in the calling thread.
    An empty features partition gets an empty predictions partition whose keys keep the features' dtypes.
    """
    import os

    day = as_day(ds)
    spec = scored
    columns = list(dict.fromkeys([*spec.keys, *spec.columns]))
    empty_keys = None
    if store.manifest(spec.features_dataset, version, day).rows == 0:
        empty_keys = store.read(spec.features_dataset, version, day, columns=list(spec.keys))
    batches = store.iter_batches(spec.features_dataset, version, day, batch_rows, columns=columns)
    meta = {"model_name": model_name, "model_version": str(model_version), **(extra or {})}
    n = workers or os.cpu_count() or 1
    frames = (score_batches(model, batches, version, model_name, model_version, spec, empty_keys=empty_keys)
              if n == 1 else
              score_batches_concurrently(model, batches, version, model_name, model_version, n, spec,
                                         empty_keys=empty_keys))
    return store.write_batches(spec.predictions_dataset, version, day, frames, extra=meta)
