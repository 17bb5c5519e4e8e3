"""The loop's steps as plain functions: what each Airflow task calls, and what the demo and tests call.

Each step works on one day (or one window ending on a day), reads its inputs from the store, writes its
output partition as a transaction and returns a small JSON-able result for XCom.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from loopline.features import FEATURES_DATASET, features_for_day
from loopline.scoring import PREDICTIONS_DATASET, score_partition
from loopline.settings import Settings
from loopline.sources import RawSource
from loopline.store import PartitionNotFoundError, PartitionStore, as_day
from loopline.training import TrainingWindow, load_window, train

if TYPE_CHECKING:
    import pandas as pd

    from loopline.tracking import RegisteredModel


class NoChampionError(LookupError):
    """The registered model has no ``champion`` alias yet: nothing can be scored."""


@dataclass(frozen=True)
class DayResult:
    """Outcome of a day's step (the XCom value)."""

    ds: str
    dataset: str
    status: Literal["written", "empty"]
    uri: str
    rows: int
    content_hash: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def store_for(settings: Settings, *, fs: Any = None, access: str = "", check: bool = True) -> PartitionStore:
    """The partition store at ``settings.store_root``.

    Outside Airflow the filesystem comes from fsspec with ``settings.storage_options()`` (and the standard
    ``AWS_*`` / ``GOOGLE_APPLICATION_CREDENTIALS`` environment that s3fs and gcsfs read); inside Airflow the
    caller passes the filesystem Airflow built from a connection (``loopline_airflow.hooks.store``) and says so
    in ``access``. With ``check`` an object-store root whose bucket is missing or whose credentials are refused
    fails here with :class:`~loopline.store.StoreAccessError`, before any work is done.
    """
    store = PartitionStore(settings.store_root, settings.storage_options(), fs=fs, access=access)
    return store.check() if check else store


def build_features_day(
    source: RawSource,
    store: PartitionStore,
    ds: str | dt.date,
    version: str,
    *,
    validate: Any = None,
) -> DayResult:
    """Build and write one day's features partition.

    ``validate`` (optional) is called with the built frame before anything is written; it raises to stop
    the day, so a day that fails validation leaves nothing behind. A day without flights writes nothing
    and reports ``status="empty"``.
    """
    day = as_day(ds)
    frame = features_for_day(source, day, version)
    uri = store.uri(FEATURES_DATASET, version, day)
    if frame.empty:
        return DayResult(day.isoformat(), FEATURES_DATASET, "empty", uri, 0, reason=f"no flights on {day}")
    if validate is not None:
        validate(frame)
    manifest = store.write(FEATURES_DATASET, version, day, frame)
    return DayResult(day.isoformat(), FEATURES_DATASET, "written", uri, manifest.rows, manifest.content_hash)


def train_and_register(
    store: PartitionStore,
    settings: Settings,
    as_of: str | dt.date,
    *,
    window_days: int | None = None,
    validation_days: int | None = None,
    params: dict[str, Any] | None = None,
    context: dict[str, str] | None = None,
    frame: pd.DataFrame | None = None,
) -> RegisteredModel:
    """Train a challenger on the window ending at ``as_of`` and register it in MLflow."""
    from loopline.tracking import log_training_run

    window = TrainingWindow.ending(
        as_of, window_days or settings.train_window_days, validation_days or settings.validation_days
    )
    data = frame if frame is not None else load_window(store, settings.feature_set_version, window)
    result = train(data, window, settings.feature_set_version, seed=settings.seed, params=params)
    return log_training_run(result, settings, context=context)


def score_day(
    store: PartitionStore,
    settings: Settings,
    ds: str | dt.date,
    *,
    model_uri: str | None = None,
) -> DayResult:
    """Score a day's features with the champion (or ``model_uri``) into its predictions partition."""
    from loopline.tracking import CHAMPION, load_model, resolve_alias

    day = as_day(ds)
    version = settings.feature_set_version
    if not store.exists(FEATURES_DATASET, version, day):
        raise PartitionNotFoundError(
            f"no features partition for {day} at {store.uri(FEATURES_DATASET, version, day)}; backfill it first"
        )
    if model_uri is None:
        model_version = resolve_alias(settings, CHAMPION)
        if model_version is None:
            raise NoChampionError(
                f"registered model {settings.model_name!r} has no @{CHAMPION} alias yet; train and promote one"
            )
        # Pin the version we resolved so a promotion during scoring cannot mix two models in one day.
        model_uri = f"models:/{settings.model_name}/{model_version}"
    else:
        model_version = model_uri.rstrip("/").rsplit("/", 1)[-1]
    model = load_model(model_uri, settings)
    manifest = score_partition(
        store, day, model, version=version, model_name=settings.model_name, model_version=model_version,
        batch_rows=settings.score_batch_rows, extra={"model_uri": model_uri},
    )
    uri = store.uri(PREDICTIONS_DATASET, version, day)
    return DayResult(day.isoformat(), PREDICTIONS_DATASET, "written", uri, manifest.rows, manifest.content_hash)
