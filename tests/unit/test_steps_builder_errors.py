"""A project's feature builder that raises: the day fails with a message naming the project, the day and the builder.

A small project of the test's own (not the shared bikes project): one CSV a day, and a builder that looks up a
column that only one day's file lacks, so it raises ``KeyError`` on that day and works on the others.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from loopline import steps
from loopline.project import Project, load_project, project_names
from loopline.runner import run_project
from loopline.settings import Settings
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit

START = dt.date(2023, 5, 1)
BAD_DAY = START + dt.timedelta(days=1)

PROJECT_YAML = """\
project: parcels
start_date: 2023-05-01
sources:
  parcels:
    uri: "parcels/ds={ds}.csv"
    format: csv
features:
  version: 1
  keys: [parcel_id]
  build: "builder:build"
  columns:
    - {name: weight_kg, kind: numeric, range: [0, 100]}
models:
  late:
    task: binary_classification
    label: {column: late, positive: "Y", values: ["Y", "N"]}
    training: {window_days: 30, validation_days: 5, min_rows: 10}
    schedules: {retrain: null}
"""

BUILDER_PY = '''\
def build(tables, ds):
    frame = tables["parcels"].copy()
    frame["weight_kg"] = frame["weight_g"] / 1000.0  # KeyError on a day whose file has no weight_g
    return frame
'''


def _write_project(root: Path, days: int = 3) -> Project:
    folder = root / "parcels"
    (folder / "parcels").mkdir(parents=True)
    (folder / "project.yaml").write_text(PROJECT_YAML, encoding="utf-8")
    (folder / "builder.py").write_text(BUILDER_PY, encoding="utf-8")
    for i in range(days):
        day = START + dt.timedelta(days=i)
        frame = pd.DataFrame({"parcel_id": [f"P{day:%m%d}-{n}" for n in range(8)],
                              "weight_g": [500.0 + 100 * n for n in range(8)],
                              "late": ["Y" if n % 3 == 0 else "N" for n in range(8)]})
        if day == BAD_DAY:
            frame = frame.rename(columns={"weight_g": "grams"})
        frame.to_csv(folder / "parcels" / f"ds={day.isoformat()}.csv", index=False)
    return load_project(folder / "project.yaml")


def _assert_names_everything(text: str, project: Project) -> None:
    assert "project 'parcels'" in text and f"day {BAD_DAY}" in text
    assert "features.build builder:build" in text
    assert "KeyError: 'weight_g'" in text
    assert str(project.path) in text
    assert "nothing was written for that day" in text


def test_a_builder_that_raises_fails_the_day_naming_project_day_builder_and_file(tmp_path: Path) -> None:
    project = _write_project(tmp_path / "projects")
    store = PartitionStore((tmp_path / "store").as_uri())
    dataset = project_names(project).features_dataset
    good = steps.features_day(project, store, START, validate=False)
    assert good.status == "written" and good.rows == 8
    with pytest.raises(steps.ProjectDataError) as err:
        steps.features_day(project, store, BAD_DAY, validate=False)
    assert isinstance(err.value.__cause__, KeyError)
    _assert_names_everything(str(err.value), project)
    assert not store.exists(dataset, "1", BAD_DAY)
    assert store.days(dataset, "1") == [START]
    assert store.manifest(dataset, "1", START).content_hash == good.content_hash


def test_loopline_run_records_the_failing_day_and_features_the_others(tmp_path: Path) -> None:
    project = _write_project(tmp_path / "projects")
    settings = Settings(home=tmp_path / "home")
    store = PartitionStore(settings.store_root)
    summary = run_project(project, START, START + dt.timedelta(days=2), settings=settings, store=store)
    assert summary.days_featured == 2 and summary.days_empty == 0
    assert [f["ds"] for f in summary.days_failed] == [BAD_DAY.isoformat()]
    _assert_names_everything(summary.days_failed[0]["error"], project)
    dataset = project_names(project).features_dataset
    assert store.days(dataset, "1") == [START, START + dt.timedelta(days=2)]
