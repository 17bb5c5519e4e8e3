"""GXValidationOperator with real Great Expectations on real (and deliberately broken) partitions."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from loopline.features import FEATURES_DATASET
from loopline.pipeline import build_features_day
from loopline.scoring import PREDICTIONS_DATASET, score_partition
from loopline.sources import RAW_FLIGHTS, RAW_VERSION, NycFlights13Source, StoreRawSource, land_day
from loopline.store import PartitionStore
from loopline.training import TrainingWindow, train
from loopline_airflow.exceptions import LooplineConfigurationError, LooplineValidationError
from loopline_airflow.operators.validation import GXValidationOperator

from tests.integration.conftest import task_context

pytestmark = pytest.mark.integration
DAY = dt.date(2013, 1, 10)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> PartitionStore:
    """Raw, features and predictions partitions of 2013-01-10 (and the day before, for weather)."""
    s = PartitionStore(tmp_path_factory.mktemp("gxstore").as_uri())
    src = NycFlights13Source()
    for d in (DAY - dt.timedelta(days=1), DAY):
        land_day(src, s, d)
        build_features_day(StoreRawSource(s), s, d, "1")
    frame = s.read_range(FEATURES_DATASET, "1", DAY - dt.timedelta(days=1), DAY)
    model = train(frame, TrainingWindow(DAY - dt.timedelta(days=1), DAY, DAY), "1",
                  params={"max_iter": 5}).model
    score_partition(s, DAY, model, version="1", model_name="m", model_version="1")
    return s


def bad_features(store: PartitionStore):
    frame = store.read(FEATURES_DATASET, "1", DAY)
    frame.loc[:4, "label"] = 3
    frame.loc[:49, "origin"] = "XXX"
    return frame


@pytest.mark.parametrize(("suite", "dataset"), [("raw_flights", RAW_FLIGHTS), ("features", FEATURES_DATASET),
                                                 ("predictions", PREDICTIONS_DATASET)])
def test_real_partitions_pass_their_suites(store, suite, dataset):
    version = RAW_VERSION if dataset == RAW_FLIGHTS else "1"
    op = GXValidationOperator(task_id="validate", suite=suite, dataset=dataset, version=version,
                              ds=DAY.isoformat(), store_root=store.root)
    out = op.execute(task_context())
    assert out["success"] is True and out["failures"] == [] and out["rows"] > 500
    assert out["result_uri"].endswith(f"/_validation/{dataset}/v={version}/ds=2013-01-10/gx_result.json")
    assert json.loads(json.dumps(out)) == out
    stored = json.loads(store.read_side_file("validation", dataset, version, DAY, "gx_result.json"))
    assert stored["summary"]["success"] is True and stored["result"]["success"] is True
    assert b"<html" in store.read_side_file("validation", dataset, version, DAY, "data_docs.html").lower()


def test_failing_partition_raises_with_failures_and_report_location(store):
    store.write(FEATURES_DATASET, "bad", DAY, bad_features(store))
    before = store.manifest(FEATURES_DATASET, "bad", DAY)
    op = GXValidationOperator(task_id="validate", suite="features",
                              dataset_uri=store.uri(FEATURES_DATASET, "bad", DAY))
    with pytest.raises(LooplineValidationError) as err:
        op.execute(task_context())
    message = str(err.value)
    assert "label: expect_column_values_to_be_in_set (observed 5 unexpected" in message
    assert "origin: expect_column_values_to_be_in_set (observed 50 unexpected" in message
    assert "_validation/features/v=bad/ds=2013-01-10/gx_result.json" in message
    assert "data_docs.html" in message
    assert err.value.summary["success"] is False and len(err.value.summary["failures"]) == 2
    assert store.manifest(FEATURES_DATASET, "bad", DAY) == before  # the partition is untouched


def test_warn_mode_returns_the_failed_summary(store):
    store.write(FEATURES_DATASET, "warn", DAY, bad_features(store))
    op = GXValidationOperator(task_id="validate", suite="features", dataset=FEATURES_DATASET, version="warn",
                              ds=DAY.isoformat(), store_root=store.root, on_failure="warn")
    out = op.execute(task_context())
    assert out["success"] is False and {f["column"] for f in out["failures"]} == {"label", "origin"}


def test_delete_on_failure_removes_the_bad_partition_but_keeps_the_report(store):
    store.write(FEATURES_DATASET, "del", DAY, bad_features(store))
    op = GXValidationOperator(task_id="validate", suite="features", dataset=FEATURES_DATASET, version="del",
                              ds=DAY.isoformat(), store_root=store.root, delete_on_failure=True)
    with pytest.raises(LooplineValidationError, match="was deleted"):
        op.execute(task_context())
    assert not store.exists(FEATURES_DATASET, "del", DAY)
    assert store.read_side_file("validation", FEATURES_DATASET, "del", DAY, "gx_result.json")


def test_frame_callable_validates_before_anything_is_written(store):
    op = GXValidationOperator(task_id="validate", suite="features", frame_callable=bad_features,
                              op_kwargs={"store": store}, dataset=FEATURES_DATASET, version="pre",
                              ds=DAY.isoformat(), store_root=store.root)
    with pytest.raises(LooplineValidationError, match="failed expectation suite features"):
        op.execute(task_context())
    assert not store.exists(FEATURES_DATASET, "pre", DAY)
    assert store.read_side_file("validation", FEATURES_DATASET, "pre", DAY, "gx_result.json")


def test_missing_partition_says_what_to_build(store):
    op = GXValidationOperator(task_id="validate", suite="features", dataset=FEATURES_DATASET, version="1",
                              ds="2013-06-01", store_root=store.root)
    with pytest.raises(LooplineConfigurationError, match=r"ds=2013-06-01 does not exist.*build that day"):
        op.execute(task_context())


def test_missing_and_malformed_suites_are_named(store, tmp_path):
    op = GXValidationOperator(task_id="validate", suite="no_such_suite", dataset=FEATURES_DATASET, version="1",
                              ds=DAY.isoformat(), store_root=store.root)
    with pytest.raises(LooplineConfigurationError, match=r"no_such_suite.json does not exist; shipped suites"):
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
