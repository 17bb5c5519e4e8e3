"""loopline.steps' features step on the bikes project: what a day's sources give, what is written, what is refused.

(The steps that need a tracking server are in ``tests/integration/test_core_steps.py``.)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from loopline import steps
from loopline.project import Project, load_project, project_names, resolve
from loopline.store import PartitionStore

from tests.support.bikes_project import START, day_frame, write_project

pytestmark = pytest.mark.unit
DAY = START + dt.timedelta(days=2)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A bikes project of its own (the test may change its files): 5 days of CSV."""
    return load_project(write_project(tmp_path / "projects", days=5, rows=120))


def test_a_day_without_data_is_reported_empty_and_writes_nothing(project: Project, tmp_path: Path) -> None:
    store = PartitionStore((tmp_path / "store").as_uri())
    missing = START + dt.timedelta(days=30)  # no file for that day
    result = steps.features_day(project, store, missing)
    assert result.status == "empty" and result.rows == 0 and result.reason == f"no rows on {missing}"
    assert not store.exists("bikes/features", "2", missing)


def test_rebuilding_a_day_gives_the_same_partition_and_replaces_it(project: Project, tmp_path: Path) -> None:
    store = PartitionStore((tmp_path / "store").as_uri())
    first = steps.features_day(project, store, DAY, validate=False)
    again = steps.features_day(project, store, DAY, validate=False)
    assert first.status == again.status == "written" and first.rows == again.rows == 120
    assert first.content_hash == again.content_hash == store.manifest("bikes/features", "2", DAY).content_hash
    assert store.days("bikes/features", "2") == [DAY]


def test_a_value_of_the_wrong_kind_names_project_day_and_column(project: Project, tmp_path: Path) -> None:
    store = PartitionStore((tmp_path / "store").as_uri())
    good = steps.features_day(project, store, START, validate=False)
    # The columns as a source would hand them over without a builder, one temperature not a number.
    passthrough = project.model_copy(update={"features": project.features.model_copy(update={"build": None})})
    built = resolve(project, "features.build")({"rentals": steps.read_source(project, "rentals", DAY)}, DAY)
    built["temp_c"] = built["temp_c"].astype(object)
    built.loc[7, "temp_c"] = "warm"
    with pytest.raises(steps.ProjectDataError) as err:
        steps.features_day(passthrough, store, DAY, tables={"rentals": built}, validate=False)
    text = str(err.value)
    assert "project 'bikes'" in text and f"day {DAY}" in text and "'temp_c'" in text and "not numbers" in text
    assert "'warm'" in text
    assert not store.exists("bikes/features", "2", DAY)  # nothing written for that day
    assert store.manifest("bikes/features", "2", START).content_hash == good.content_hash  # others untouched


def test_a_files_source_reads_parquet_as_it_reads_csv(project: Project, tmp_path: Path) -> None:
    assert project.folder is not None
    for d in (START, DAY):
        day_frame(d, 120).to_parquet(tmp_path / f"rentals-{d}.parquet", index=False)
    source = project.sources["rentals"].model_copy(update={"uri": f"file://{tmp_path}/rentals-{{ds}}.parquet",
                                                           "format": "parquet"})
    as_parquet = project.model_copy(update={"sources": {"rentals": source}})
    from_csv = steps.read_source(project, "rentals", DAY)
    from_parquet = steps.read_source(as_parquet, "rentals", DAY)
    assert len(from_parquet) == len(from_csv) == 120
    pd.testing.assert_frame_equal(steps.build_features(as_parquet, {"rentals": from_parquet}, DAY),
                                  steps.build_features(project, {"rentals": from_csv}, DAY))
    assert steps.read_source(as_parquet, "rentals", START + dt.timedelta(days=1)).empty  # no file: no rows


def test_a_store_source_reads_what_was_landed_in_the_store(project: Project, tmp_path: Path) -> None:
    store = PartitionStore((tmp_path / "store").as_uri())
    source = project.sources["rentals"].model_copy(update={"kind": "store", "uri": None, "format": None})
    landed = project.model_copy(update={"sources": {"rentals": source}})
    raw = project_names(landed).raw_dataset("rentals")
    assert raw == "bikes/raw/rentals"
    store.write(raw, "1", DAY, day_frame(DAY, 120))
    got = steps.read_source(landed, "rentals", DAY, store=store)
    pd.testing.assert_frame_equal(got, store.read(raw, "1", DAY))
    assert steps.read_source(landed, "rentals", START, store=store).empty  # never landed: no rows, not an error
    assert steps.features_day(landed, store, DAY, validate=False).rows == 120


@pytest.mark.parametrize("name", ["flights", "bikes"])
def test_no_model_reads_a_key_a_label_or_the_day(name: str, bikes: Project) -> None:
    project = bikes if name == "bikes" else load_project("flights")
    for model in project.models:
        inputs = steps.model_inputs(project, model)
        assert inputs.columns and not set(inputs.columns) & {*project.features.keys, *project.label_columns(), "ds"}
        assert set(steps.scored_spec(project, model).columns) == set(inputs.columns)
