"""GXValidationOperator: argument checks that need no data (GX itself is exercised in integration tests)."""

from __future__ import annotations

import pytest
from fsspec.implementations.memory import MemoryFileSystem
from loopline.project.names import ModelNames, ProjectNames
from loopline_airflow.exceptions import LooplineConfigurationError, LooplineValidationError
from loopline_airflow.operators.validation import GXValidationOperator, parse_partition_uri

pytestmark = pytest.mark.unit


def test_parse_partition_uri():
    assert parse_partition_uri("s3://b/store/features/v=1/ds=2013-03-01/", store_root="s3://b/store/") == (
        "s3://b/store", "features", "1", "2013-03-01")
    # Without store_root, the last folders are read by Loopline's dataset names: here project "store"'s features.
    assert parse_partition_uri("s3://b/store/features/v=1/ds=2013-03-01/") == (
        "s3://b", "store/features", "1", "2013-03-01")
    with pytest.raises(LooplineConfigurationError, match="not a partition URI"):
        parse_partition_uri("s3://b/store/features")


# Every dataset Loopline writes for a project (loopline.project.names), as the store lays it out.
NAMES = ProjectNames("bikes")
MODEL = ModelNames("bikes", "late_return", "bikes.late_return")
LOOPLINE_DATASETS = [NAMES.features_dataset, NAMES.raw_dataset("rentals"), MODEL.predictions_dataset,
                     MODEL.drift_dataset]


@pytest.mark.parametrize("dataset", LOOPLINE_DATASETS)
@pytest.mark.parametrize("where", ["local", "s3"])
def test_store_uris_of_loopline_datasets_round_trip(dataset, where, tmp_path):
    from loopline.store import PartitionStore

    root = (tmp_path / "store").as_uri() if where == "local" else "s3://bucket/prefix/loopline"
    store = PartitionStore(root, fs=MemoryFileSystem())  # addressing only: nothing is read or written
    uri = store.uri(dataset, "2", "2022-03-03")
    for given in (None, root, root + "/"):
        parsed = parse_partition_uri(uri, store_root=given)
        assert parsed == (root, dataset, "2", "2022-03-03")
        again = PartitionStore(parsed[0], fs=MemoryFileSystem())
        assert again.uri(*parsed[1:]) == uri
        # the GX report lands in the store's own _validation tree
        assert again.side_path("validation", *parsed[1:]) == f"{root}/_validation/{dataset}/v=2/ds=2022-03-03"


def test_store_root_disambiguates_any_dataset_name(tmp_path):
    uri = "s3://bucket/prefix/shop/landing/orders/v=3/ds=2024-01-31"
    assert parse_partition_uri(uri, store_root="s3://bucket/prefix") == (
        "s3://bucket/prefix", "shop/landing/orders", "3", "2024-01-31")
    assert parse_partition_uri(uri, store_root="s3://bucket") == (
        "s3://bucket", "prefix/shop/landing/orders", "3", "2024-01-31")
    local = (tmp_path / "store").as_uri() + "/orders/v=1/ds=2024-01-31"
    assert parse_partition_uri(local, store_root=str(tmp_path / "store"))[:2] == ((tmp_path / "store").as_uri(),
                                                                                  "orders")
    with pytest.raises(LooplineConfigurationError, match=r"cannot tell where the store root ends.*store_root="):
        parse_partition_uri(uri)
    with pytest.raises(LooplineConfigurationError, match="does not lie under store_root 's3://other'"):
        parse_partition_uri(uri, store_root="s3://other")
    with pytest.raises(LooplineConfigurationError, match="does not lie under store_root"):
        parse_partition_uri("s3://bucket/prefix/v=3/ds=2024-01-31", store_root="s3://bucket/prefix")


def test_the_operator_takes_the_root_from_store_root_else_loopline_store_root(tmp_path, monkeypatch):
    root = (tmp_path / "store").as_uri()
    uri = f"{root}/shop/landing/orders/v=1/ds=2024-01-31"  # not a dataset Loopline names
    monkeypatch.setenv("LOOPLINE_STORE_ROOT", root)
    op = GXValidationOperator(task_id="v", suite="s.json", dataset_uri=uri)
    assert op._coordinates() == (root, "shop/landing/orders", "1", "2024-01-31")
    op = GXValidationOperator(task_id="v", suite="s.json", dataset_uri=uri, store_root=f"{root}/shop")
    assert op._coordinates() == (f"{root}/shop", "landing/orders", "1", "2024-01-31")
    monkeypatch.setenv("LOOPLINE_STORE_ROOT", (tmp_path / "elsewhere").as_uri())
    with pytest.raises(LooplineConfigurationError, match="cannot tell where the store root ends"):
        GXValidationOperator(task_id="v", suite="s.json", dataset_uri=uri)._coordinates()


def test_the_report_of_a_dataset_uri_lands_under_the_store_root(context, tmp_path, monkeypatch):
    import json

    import pandas as pd
    from loopline.store import PartitionStore

    monkeypatch.setenv("LOOPLINE_STORE_ROOT", (tmp_path / "elsewhere").as_uri())  # the URI is not under it
    store = PartitionStore((tmp_path / "store").as_uri())
    store.write(NAMES.features_dataset, "2", "2022-03-03", pd.DataFrame({"rental_ref": ["a", "b"]}))
    suite = {"name": "refs", "expectations": [{"type": "expect_column_to_exist", "kwargs": {"column": "rental_ref"}}]}
    op = GXValidationOperator(task_id="v", suite=suite, dataset_uri=store.uri(NAMES.features_dataset, "2",
                                                                              "2022-03-03"))
    result = op.execute(context)
    report = tmp_path / "store" / "_validation" / "bikes" / "features" / "v=2" / "ds=2022-03-03" / "gx_result.json"
    assert result["success"] and report.is_file() and json.loads(report.read_text())
    assert result["result_uri"] == f"{store.root}/_validation/bikes/features/v=2/ds=2022-03-03/gx_result.json"
    assert not (tmp_path / "_validation").exists()


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
    op = GXValidationOperator(task_id="v", suite=str(suite), dataset_uri=store.uri("features", "1", "2013-01-01"),
                              store_root=tmp_path.as_uri())
    with pytest.raises(LooplineValidationError, match=r"cannot validate .*ds=2013-01-01.*content hash"):
        op.execute(context)
