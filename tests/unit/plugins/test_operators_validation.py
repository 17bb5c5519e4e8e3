"""GXValidationOperator: argument checks that need no data (GX itself is exercised in integration tests)."""

from __future__ import annotations

import pytest
from loopline_airflow.exceptions import LooplineConfigurationError, LooplineValidationError
from loopline_airflow.operators.validation import GXValidationOperator, parse_partition_uri

pytestmark = pytest.mark.unit


def test_parse_partition_uri():
    assert parse_partition_uri("s3://b/store/features/v=1/ds=2013-03-01/") == (
        "s3://b/store", "features", "1", "2013-03-01")
    with pytest.raises(LooplineConfigurationError, match="not a partition URI"):
        parse_partition_uri("s3://b/store/features")


def test_template_fields_and_exception_types():
    op = GXValidationOperator(task_id="v", suite="features", dataset_uri="file:///x/features/v=1/ds=2013-01-01")
    assert all(hasattr(op, f) for f in op.template_fields)
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    assert issubclass(LooplineValidationError, AirflowFailException)
    assert issubclass(LooplineValidationError, AirflowException)


def test_nothing_to_validate_and_bad_on_failure(context):
    with pytest.raises(LooplineConfigurationError, match="nothing to validate"):
        GXValidationOperator(task_id="v", suite="features", dataset="features").execute(context)
    with pytest.raises(LooplineConfigurationError, match="on_failure"):
        GXValidationOperator(task_id="v", suite="features", on_failure="ignore",
                             frame_callable=lambda: None).execute(context)


def test_constructor_does_no_io(monkeypatch):
    import loopline.validation as v

    monkeypatch.setattr(v, "load_suite", lambda *a: (_ for _ in ()).throw(AssertionError("I/O at init")))
    GXValidationOperator(task_id="v", suite="does-not-exist", dataset_uri="file:///nope/f/v=1/ds=2013-01-01")


def test_a_broken_partition_fails_without_retry_naming_the_file(context, tmp_path):
    import pandas as pd
    from loopline.store import MANIFEST, PartitionStore

    store = PartitionStore(tmp_path.as_uri())
    store.write("features", "1", "2013-01-01", pd.DataFrame({"id": [1, 2]}))
    manifest = tmp_path / "features" / "v=1" / "ds=2013-01-01" / MANIFEST
    manifest.write_text(manifest.read_text().replace('"content_hash": "', '"content_hash": "0'))
    suite = tmp_path / "ids.json"
    suite.write_text('{"name": "ids", "expectations": [{"type": "expect_column_to_exist", '
                     '"kwargs": {"column": "id"}}]}')
    op = GXValidationOperator(task_id="v", suite=str(suite), dataset_uri=store.uri("features", "1", "2013-01-01"))
    with pytest.raises(LooplineValidationError, match=r"cannot validate .*ds=2013-01-01.*content hash"):
        op.execute(context)
