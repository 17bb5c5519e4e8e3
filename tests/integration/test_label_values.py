"""Labels are built only from values that can be labels: a day whose label column holds a value outside the
declared ``label.values`` (binary) or ``label.range`` (regression), or a non-finite regression label, fails
validation naming the project, the day, the column and the full report; nothing is written for it and the
days around it are untouched.

The bikes project (tests/support/bikes_project.py) declares ``late`` in ``["Y", "N"]`` and ``minutes`` in
``[0, 1440]``. Each case corrupts one row of one day's raw CSV.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loopline.project import load_file
from loopline.steps import FeatureValidationError, features_day
from loopline.store import PartitionStore

from tests.support.bikes_project import START, day_frame, write_project

pytestmark = pytest.mark.integration
GOOD_BEFORE, BAD, GOOD_AFTER = START, START + dt.timedelta(days=1), START + dt.timedelta(days=2)


def _set(column: str, value: object) -> Callable[[pd.DataFrame], None]:
    def apply(frame: pd.DataFrame) -> None:
        frame[column] = frame[column].astype(object)
        frame.loc[7, column] = value
    return apply


CASES = [
    # (case, corruption, column the message must name)
    ("binary label in lower case", _set("late", "y"), "late"),
    ("binary label spelled out", _set("late", "yes"), "late"),
    ("binary label as a number", _set("late", "1"), "late"),
    ("binary label as a placeholder", _set("late", "?"), "late"),
    ("regression label negative", _set("minutes", -5.0), "minutes"),
    ("regression label above the range", _set("minutes", 100_000.0), "minutes"),
    ("regression label infinite", _set("minutes", np.inf), "minutes"),
    ("regression label minus infinity", _set("minutes", -np.inf), "minutes"),
]


@pytest.mark.parametrize(("case", "corrupt", "column"), CASES, ids=[c[0] for c in CASES])
def test_a_label_that_cannot_be_a_label_fails_the_day_and_loses_nothing(
    tmp_path: Path, case: str, corrupt: Callable[[pd.DataFrame], None], column: str
) -> None:
    folder = write_project(tmp_path / "projects", days=3, rows=60)
    bad = day_frame(BAD, 60)
    corrupt(bad)
    bad.to_csv(folder / "rentals" / f"ds={BAD}.csv", index=False)
    project = load_file(folder / "project.yaml")
    store = PartitionStore((tmp_path / "store").as_uri())

    assert features_day(project, store, GOOD_BEFORE).status == "written"
    before = store.manifest("bikes/features", "2", GOOD_BEFORE)
    with pytest.raises(FeatureValidationError) as err:
        features_day(project, store, BAD)
    assert features_day(project, store, GOOD_AFTER).status == "written"

    text = str(err.value)
    assert "project 'bikes'" in text and str(BAD) in text, text
    assert f"\n  {column}: expect_column_values_to_be_" in text, text  # the failing column and check
    assert "Full result:" in text, text
    assert store.days("bikes/features", "2") == [GOOD_BEFORE, GOOD_AFTER]
    assert store.manifest("bikes/features", "2", GOOD_BEFORE) == before


def test_declared_label_values_are_what_the_partition_holds(tmp_path: Path) -> None:
    folder = write_project(tmp_path / "projects", days=1, rows=120)
    project = load_file(folder / "project.yaml")
    store = PartitionStore((tmp_path / "store").as_uri())
    assert features_day(project, store, START).status == "written"
    frame = store.read("bikes/features", "2", START)
    assert set(frame["late"].dropna()) <= {"Y", "N"}
    assert frame["minutes"].dropna().between(0, 1440).all()
    assert frame["late"].isna().any()  # bikes not yet returned: no label, still a row to score
