"""GXValidationOperator with real Great Expectations on real (and deliberately broken) partitions of the bikes
project, against the suite generated from its project file (as a mapping and as a suite file)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from loopline import steps
from loopline.project import Project, project_names
from loopline.store import PartitionStore
from loopline_airflow.exceptions import LooplineConfigurationError, LooplineValidationError
from loopline_airflow.operators.validation import GXValidationOperator

from tests.integration.conftest import task_context

pytestmark = pytest.mark.integration
DAY = dt.date(2022, 3, 10)
FEATURES = "bikes/features"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, bikes: Project) -> PartitionStore:
    """The bikes features partition of 2022-03-10, built and validated by ``steps.features_day``."""
    assert project_names(bikes).features_dataset == FEATURES
    s = PartitionStore(tmp_path_factory.mktemp("gxstore").as_uri())
    assert steps.features_day(bikes, s, DAY).status == "written"
    return s


@pytest.fixture(scope="module")
def suite(bikes: Project) -> dict:
    return steps.features_suite(bikes)


def bad_features(store: PartitionStore):
    frame = store.read(FEATURES, "2", DAY)
    frame.loc[:4, "start_hour"] = 30.0
    frame.loc[:49, "station"] = "harbour"
    return frame


@pytest.mark.parametrize("as_file", [False, True])
def test_a_real_partition_passes_its_generated_suite(store, suite, tmp_path: Path, as_file: bool):
    given: str | dict = suite
    if as_file:
        given = str(tmp_path / "bikes_features.json")
        Path(given).write_text(json.dumps(suite))
    op = GXValidationOperator(task_id="validate", suite=given, dataset=FEATURES, version="2", ds=DAY.isoformat(),
                              store_root=store.root)
    out = op.execute(task_context())
    assert out["success"] is True and out["failures"] == [] and out["rows"] == 300
    assert out["suite"] == "bikes_features_v2"
    assert out["result_uri"].endswith(f"/_validation/{FEATURES}/v=2/ds=2022-03-10/gx_result.json")
    assert json.loads(json.dumps(out)) == out
    stored = json.loads(store.read_side_file("validation", FEATURES, "2", DAY, "gx_result.json"))
    assert stored["summary"]["success"] is True and stored["result"]["success"] is True
    assert b"<html" in store.read_side_file("validation", FEATURES, "2", DAY, "data_docs.html").lower()


def test_failing_partition_raises_with_failures_and_report_location(store, suite):
    store.write(FEATURES, "bad", DAY, bad_features(store))
    before = store.manifest(FEATURES, "bad", DAY)
    op = GXValidationOperator(task_id="validate", suite=suite, dataset=FEATURES, version="bad", ds=DAY.isoformat(),
                              store_root=store.root)
    with pytest.raises(LooplineValidationError) as err:
        op.execute(task_context())
    message = str(err.value)
    assert "start_hour: expect_column_values_to_be_between (observed 5 unexpected" in message
    assert "station: expect_column_values_to_be_in_set (observed 50 unexpected" in message
    assert f"_validation/{FEATURES}/v=bad/ds=2022-03-10/gx_result.json" in message
    assert "data_docs.html" in message
    assert err.value.summary["success"] is False and len(err.value.summary["failures"]) == 2
    assert store.manifest(FEATURES, "bad", DAY) == before  # the partition is untouched


def test_warn_mode_returns_the_failed_summary(store, suite):
    store.write(FEATURES, "warn", DAY, bad_features(store))
    op = GXValidationOperator(task_id="validate", suite=suite, dataset=FEATURES, version="warn",
                              ds=DAY.isoformat(), store_root=store.root, on_failure="warn")
    out = op.execute(task_context())
    assert out["success"] is False and {f["column"] for f in out["failures"]} == {"start_hour", "station"}


def test_delete_on_failure_removes_the_bad_partition_but_keeps_the_report(store, suite):
    store.write(FEATURES, "del", DAY, bad_features(store))
    op = GXValidationOperator(task_id="validate", suite=suite, dataset=FEATURES, version="del",
                              ds=DAY.isoformat(), store_root=store.root, delete_on_failure=True)
    with pytest.raises(LooplineValidationError, match="was deleted"):
        op.execute(task_context())
    assert not store.exists(FEATURES, "del", DAY)
    assert store.read_side_file("validation", FEATURES, "del", DAY, "gx_result.json")


def test_frame_callable_validates_before_anything_is_written(store, suite):
    op = GXValidationOperator(task_id="validate", suite=suite, frame_callable=bad_features,
                              op_kwargs={"store": store}, dataset=FEATURES, version="pre",
                              ds=DAY.isoformat(), store_root=store.root)
    with pytest.raises(LooplineValidationError, match="failed expectation suite bikes_features_v2"):
        op.execute(task_context())
    assert not store.exists(FEATURES, "pre", DAY)
    assert store.read_side_file("validation", FEATURES, "pre", DAY, "gx_result.json")


def test_missing_partition_says_what_to_build(store, suite):
    op = GXValidationOperator(task_id="validate", suite=suite, dataset=FEATURES, version="2",
                              ds="2022-06-01", store_root=store.root)
    with pytest.raises(LooplineConfigurationError, match=r"ds=2022-06-01 does not exist.*build that day"):
        op.execute(task_context())


def test_missing_and_malformed_suites_are_named(store, tmp_path):
    op = GXValidationOperator(task_id="validate", suite="no_such_suite.json", dataset=FEATURES, version="2",
                              ds=DAY.isoformat(), store_root=store.root)
    with pytest.raises(LooplineConfigurationError, match=r"no_such_suite.json does not exist; give the path"):
        op.execute(task_context())
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "x", "expectations": [')
    op.suite = str(broken)
    with pytest.raises(LooplineConfigurationError, match="is not valid JSON"):
        op.execute(task_context())
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"name": "x", "expectations": [{"type": "expect_moon_to_be_cheese", "kwargs": {}}]}')
    op.suite = str(unknown)
    with pytest.raises(LooplineConfigurationError, match="cannot be loaded by Great Expectations"):
        op.execute(task_context())
    op.suite = {"name": "x", "expectations": [{"type": "expect_moon_to_be_cheese", "kwargs": {}}]}
    with pytest.raises(LooplineConfigurationError, match="cannot be loaded by Great Expectations"):
        op.execute(task_context())
