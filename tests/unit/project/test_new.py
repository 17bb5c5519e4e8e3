"""``loopline project new``: the file it writes loads, and its source reads the days the sample's folder holds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
import yaml
from loopline.cli import main
from loopline.project import load_file
from loopline.project.new import new_project
from loopline.steps import read_source

pytestmark = pytest.mark.unit


def orders(folder: Path, day: str) -> Path:
    path = folder / f"ds={day}" / "orders.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"order_id": [1, 2, 3], "channel": ["web", "app", "web"], "items": [1, 2, 3],
                  "returned": ["no", "yes", "no"]}).to_parquet(path, index=False)
    return path


def test_a_sample_in_a_ds_folder_gives_a_source_that_reads_every_day(tmp_path: Path) -> None:
    # Dated parent folder: the file's own day (the last date in the path) is the one templated.
    data = tmp_path / "export-2023-12-31" / "orders"
    sample = orders(data, "2024-01-01")
    orders(data, "2024-01-02")
    assert main(["project", "new", "shop", "--sample", str(sample), "--label", "returned", "--positive", "yes",
                 "--dir", str(tmp_path / "projects")]) == 0
    project = load_file(tmp_path / "projects" / "shop" / "project.yaml")
    assert project.sources["main"].uri == f"file://{data.resolve()}/ds={{ds}}/orders.parquet"  # '=' not %3D
    assert project.start_date == dt.date(2024, 1, 1)  # the sample's day, not today
    assert len(read_source(project, "main", dt.date(2024, 1, 2))) == 3
    assert [c.name for c in project.features.columns] == ["channel", "items"]
    assert project.models["returned"].label.positive == "yes"


def test_the_start_date_is_given_or_checked(tmp_path: Path) -> None:
    sample = orders(tmp_path, "2024-01-01")
    text = new_project("shop", str(sample), "returned", start_date="2023-06-01")
    assert yaml.safe_load(text)["start_date"] == dt.date(2023, 6, 1)
    with pytest.raises(ValueError, match=r"start date '2024-02-30' is not a day YYYY-MM-DD"):
        new_project("shop", str(sample), "returned", start_date="2024-02-30")


def test_a_binary_label_gets_the_values_the_sample_shows(tmp_path: Path) -> None:
    sample = orders(tmp_path, "2024-01-01")
    label = load_file_from(tmp_path, new_project("shop", str(sample), "returned", positive="yes")).label
    assert label.positive == "yes" and label.values == ["no", "yes"]
    # A label with many distinct values is not listed (the positive value alone, as before).
    many = tmp_path / "many" / "ds=2024-01-01" / "orders.parquet"
    many.parent.mkdir(parents=True)
    pd.DataFrame({"order_id": range(30), "items": range(30), "code": [f"c{i}" for i in range(30)]}).to_parquet(many)
    label = load_file_from(tmp_path / "many", new_project("shop", str(many), "code", positive="c3",
                                                           task="binary_classification")).label
    assert label.positive == "c3" and label.values is None


def load_file_from(root: Path, text: str):  # type: ignore[no-untyped-def]
    path = root / "projects" / "shop" / "project.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return next(iter(load_file(path).models.values()))
