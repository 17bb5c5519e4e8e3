"""The partition store on ``s3://`` end to end against moto in server mode on 127.0.0.1.

Two ways in, both tested: the Airflow-free core (s3fs with ``LOOPLINE_STORE_OPTIONS`` and the standard
``AWS_*`` variables) and the Airflow layer (``ObjectStoragePath`` with the Amazon provider's ``aws_default``
connection, endpoint in its extra). No ``AWS_*`` variable is set in the Airflow-layer tests, so what works
there works through the connection.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from loopline import reports
from loopline.settings import Settings
from loopline.steps import store_for
from loopline.store import MANIFEST, CorruptPartitionError, PartitionNotFoundError, PartitionStore, StoreAccessError
from loopline_airflow.exceptions import LooplineConfigurationError
from loopline_airflow.hooks.store import partition_store

from tests.support.moto_server import ACCESS_KEY, MotoS3, moto_s3
from tests.unit.plugins.conftest import drift_report

pytestmark = pytest.mark.integration
_buckets = itertools.count(1)
D1, D2, D3 = dt.date(2013, 1, 1), dt.date(2013, 1, 2), dt.date(2013, 1, 3)


def frame(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"id": range(offset, offset + n), "x": [float(i) / 3 for i in range(n)],
                         "c": pd.Series([f"k{i % 4}" for i in range(n)], dtype="string")})


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture
def bucket(s3: MotoS3) -> str:
    return s3.create_bucket(f"loopline-{next(_buckets)}")


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No credentials from the environment or ~/.aws, and a fresh Airflow object-store cache."""
    import os

    from airflow.sdk.io import store as io_store

    for key in list(os.environ):
        if key.startswith(("AWS_", "AIRFLOW_CONN_AWS", "MLFLOW_S3_", "LOOPLINE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setattr(io_store, "_STORE_CACHE", {})


@pytest.fixture
def core_settings(s3: MotoS3, bucket: str, no_aws_env: None, monkeypatch: pytest.MonkeyPatch,
                  tmp_path: Path) -> Settings:
    """Outside Airflow: credentials from AWS_* variables, the endpoint from LOOPLINE_STORE_OPTIONS."""
    for key, value in s3.aws_env().items():
        monkeypatch.setenv(key, value)
    return Settings.from_env({"LOOPLINE_HOME": str(tmp_path), "LOOPLINE_STORE_ROOT": f"s3://{bucket}/loopline",
                              "LOOPLINE_STORE_OPTIONS": json.dumps({"endpoint_url": s3.endpoint})})


@pytest.fixture
def airflow_settings(s3: MotoS3, bucket: str, no_aws_env: None, monkeypatch: pytest.MonkeyPatch,
                     tmp_path: Path) -> Settings:
    """Inside Airflow: only the aws_default connection knows the endpoint and the keys."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", s3.airflow_connection())
    return Settings(home=tmp_path, store_root=f"s3://{bucket}/loopline")


def day_keys(s3: MotoS3, bucket: str, day: dt.date, dataset: str = "features") -> list[str]:
    return [k.rsplit("/", 1)[-1] for k in s3.keys(bucket, f"loopline/{dataset}/v=1/ds={day.isoformat()}/")]


def test_core_store_on_s3_writes_lists_reads_and_replaces_days(core_settings: Settings, s3: MotoS3,
                                                                bucket: str) -> None:
    store = store_for(core_settings)
    assert type(store.fs).__name__ == "S3FileSystem"
    first = store.write("features", "1", D2, frame(10))
    store.write("features", "1", D1, frame(3))
    assert store.days("features", "1") == [D1, D2]
    assert store.exists("features", "1", D2) and not store.exists("features", "1", D3)
    assert store.manifest("features", "1", D2) == first
    pd.testing.assert_frame_equal(store.read("features", "1", D2), frame(10), check_dtype=False)
    assert day_keys(s3, bucket, D2) == sorted([MANIFEST, *first.files])
    assert store.uri("features", "1", D2) == f"s3://{bucket}/loopline/features/v=1/ds=2013-01-02"

    again = store.write("features", "1", D2, frame(4, offset=100))  # re-writing a day replaces it
    assert store.read("features", "1", D2)["id"].tolist() == [100, 101, 102, 103]
    assert again.content_hash != first.content_hash
    assert day_keys(s3, bucket, D2) == sorted([MANIFEST, *again.files])  # the old data file is gone
    assert len(store.read_range("features", "1", D1, D3)) == 7
    assert [len(b) for b in store.iter_batches("features", "1", D2, batch_rows=3)] == [3, 1]

    uri = store.write_side_file("validation", "features", "1", D2, "result.json", '{"success": true}')
    assert uri == f"s3://{bucket}/loopline/_validation/features/v=1/ds=2013-01-02/result.json"
    assert store.read_side_file("validation", "features", "1", D2, "result.json") == b'{"success": true}'
    store.delete("features", "1", D1)
    assert store.days("features", "1") == [D2]


def test_killed_writes_are_invisible_and_rewriting_the_day_replaces_it(core_settings: Settings, s3: MotoS3,
                                                                      bucket: str) -> None:
    store = store_for(core_settings)
    old = store.write("features", "1", D1, frame(5))
    client = s3.client()
    # A first write of D2 killed before its commit: its data is uploaded, its manifest never was.
    client.put_object(Bucket=bucket, Key="loopline/features/v=1/ds=2013-01-02/part-00000-killed.parquet",
                      Body=b"half a parquet file")
    # A re-write of D1 killed before its commit: a new data file beside the committed partition.
    client.put_object(Bucket=bucket, Key="loopline/features/v=1/ds=2013-01-01/part-00000-killed.parquet",
                      Body=b"half a parquet file")
    assert store.days("features", "1") == [D1]
    assert not store.exists("features", "1", D2)
    with pytest.raises(PartitionNotFoundError, match=rf"s3://{bucket}/loopline/features/v=1/ds=2013-01-02"):
        store.read("features", "1", D2)
    assert store.read("features", "1", D1)["id"].tolist() == [0, 1, 2, 3, 4]

    def exploding() -> Iterator[pd.DataFrame]:
        yield frame(5, offset=50)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        store.write_batches("features", "1", D1, exploding())
    assert store.manifest("features", "1", D1) == old  # the committed partition did not move
    assert day_keys(s3, bucket, D1) == sorted([MANIFEST, *old.files, "part-00000-killed.parquet"])

    new = store.write("features", "1", D2, frame(2, offset=7))  # the re-run commits the day
    assert store.days("features", "1") == [D1, D2]
    assert store.read("features", "1", D2)["id"].tolist() == [7, 8]
    assert new.files != ["part-00000-killed.parquet"]


def test_airflow_store_takes_keys_and_endpoint_from_aws_default(airflow_settings: Settings, s3: MotoS3,
                                                                bucket: str) -> None:
    store = partition_store(airflow_settings)
    assert store.access == "Airflow connection 'aws_default'"
    assert store.fs.endpoint_url == s3.endpoint
    credentials = asyncio.run(store.fs.session.get_credentials())
    assert credentials.access_key == ACCESS_KEY  # from the connection's login: no AWS_* variable is set
    written = store.write("features", "1", D1, frame(6))
    assert store.days("features", "1") == [D1]
    assert day_keys(s3, bucket, D1) == sorted([MANIFEST, *written.files])

    # Another connection by LOOPLINE_STORE_CONN_ID, e.g. a MinIO next to real AWS.
    store2 = partition_store(Settings.from_env({"LOOPLINE_HOME": str(airflow_settings.home),
                                                "LOOPLINE_STORE_ROOT": airflow_settings.store_root,
                                                "LOOPLINE_STORE_CONN_ID": "aws_default"}))
    assert store2.read("features", "1", D1)["id"].tolist() == list(range(6))


def test_missing_bucket_and_refused_keys_name_the_root_and_the_connection(
    airflow_settings: Settings, s3: MotoS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses

    missing = dataclasses.replace(airflow_settings, store_root="s3://no-such-bucket/loopline")
    with pytest.raises(LooplineConfigurationError,
                       match=r"s3://no-such-bucket/loopline: bucket 'no-such-bucket' does not exist.*"
                             r"Airflow connection 'aws_default'"):
        partition_store(missing)
    assert "no-such-bucket" not in {b["Name"] for b in s3.client().list_buckets()["Buckets"]}  # never created

    monkeypatch.setenv("AIRFLOW_CONN_AWS_WRONG", s3.airflow_connection(login="AKIDWRONG", password="nope"))
    wrong = dataclasses.replace(airflow_settings, store_conn_id="aws_wrong")
    with s3.enforce_auth(), pytest.raises(
        LooplineConfigurationError,
        match=rf"s3://{bucket}/loopline: access refused with Airflow connection 'aws_wrong'.*check its credentials",
    ):
        partition_store(wrong)

    # The Airflow-free path says where its credentials came from instead.
    options = json.dumps({"endpoint_url": s3.endpoint, "key": "k", "secret": "s"})
    core = Settings(home=airflow_settings.home, store_root="s3://no-such-bucket/x", store_options=options)
    with pytest.raises(StoreAccessError, match=r"s3://no-such-bucket/x: .*LOOPLINE_STORE_OPTIONS"):
        store_for(core)


def test_drift_trigger_polling_sees_reports_another_process_commits(airflow_settings: Settings, s3: MotoS3,
                                                                    bucket: str) -> None:
    import s3fs
    from loopline_airflow.triggers.drift import check_drift

    root = airflow_settings.store_root
    # "Another process": a filesystem of its own, so nothing is shared with the trigger's cached one.
    writer = PartitionStore(root, fs=s3fs.S3FileSystem(endpoint_url=s3.endpoint, key=ACCESS_KEY, secret="x",
                                                       skip_instance_cache=True))
    reports.write_drift_report(writer, "1", "2013-03-01", drift_report("2013-03-01", False, "2013-03-02T00:00:00Z"))
    assert check_drift(root, "1") is None  # the trigger listed the report tree: nothing drifted
    reports.write_drift_report(writer, "1", "2013-03-02", drift_report("2013-03-02", True, "2013-03-03T00:00:00Z"))
    found = check_drift(root, "1")  # same cached filesystem in the trigger, fresh listing
    assert found is not None and found["status"] == "drifted" and found["report"]["ds"] == "2013-03-02"


def test_drift_watcher_sees_new_and_rewritten_reports_another_process_commits(
        airflow_settings: Settings, s3: MotoS3, bucket: str) -> None:
    # The AssetWatcher's trigger keeps what it read by the identity of each report object (its ETag): a report
    # written by another process, or written again, is still seen through the trigger's cached filesystem.
    import s3fs
    from loopline_airflow.triggers.drift import new_drift_reports

    root = airflow_settings.store_root
    writer = PartitionStore(root, fs=s3fs.S3FileSystem(endpoint_url=s3.endpoint, key=ACCESS_KEY, secret="x",
                                                       skip_instance_cache=True))
    memo: dict = {}
    reports.write_drift_report(writer, "1", "2013-03-01", drift_report("2013-03-01", False, "2013-03-02T00:00:00Z"))
    assert new_drift_reports(root, "1", set(), memo=memo) == []
    reports.write_drift_report(writer, "1", "2013-03-02", drift_report("2013-03-02", True, "2013-03-03T00:00:00Z"))
    assert [r["ds"] for r in new_drift_reports(root, "1", set(), memo=memo)] == ["2013-03-02"]
    reports.write_drift_report(writer, "1", "2013-03-01", drift_report("2013-03-01", True, "2013-03-04T00:00:00Z"))
    assert [r["ds"] for r in new_drift_reports(root, "1", set(), memo=memo)] == ["2013-03-02", "2013-03-01"]


def test_feature_task_writes_its_partition_to_s3_through_aws_default(
    airflow_settings: Settings, s3: MotoS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flights features task's body (GX included) with ``aws_default`` as the only AWS configuration.

    In process rather than under ``dag.test()``: the same code path, and ``dag.test()`` in a fresh interpreter
    (Airflow DB migration included) cost 35–70 s on the shared 2-core machine.
    """
    from collections import defaultdict
    from types import SimpleNamespace

    from loopline_airflow import project_tasks

    for key, value in airflow_settings.as_env().items():
        monkeypatch.setenv(key, value)
    class Accessor(SimpleNamespace):  # the outlet event accessor: its extra and the partitions the task emits
        def add_partitions(self, keys: list[str]) -> None:
            self.partitions = list(keys)

    events: defaultdict[object, Accessor] = defaultdict(Accessor)
    ti = SimpleNamespace(dag_id="flights.features", run_id="manual__s3", try_number=1)
    context = {"params": {"ds": "2013-01-02"}, "outlet_events": events, "ti": ti}
    result = project_tasks.build_features("flights", context)  # type: ignore[arg-type]
    assert [a.partitions for a in events.values()] == [["2013-01-02"]]  # one partition: the day it wrote
    assert result["uri"] == f"{airflow_settings.store_root}/flights/features/v=1/ds=2013-01-02"
    reader = PartitionStore(airflow_settings.store_root, {"endpoint_url": s3.endpoint, "key": ACCESS_KEY,
                                                          "secret": "x"})
    manifest = reader.manifest("flights/features", "1", D2)
    assert manifest.rows == result["rows"] > 500 and manifest.extra["run_id"] == "manual__s3"
    assert day_keys(s3, bucket, D2, "flights/features") == sorted([MANIFEST, *manifest.files])


def test_broken_days_on_s3_are_named_and_quarantined_and_leftovers_cleaned(core_settings: Settings, s3: MotoS3,
                                                                          bucket: str) -> None:
    store = store_for(core_settings)
    for day in (D1, D2, D3):
        store.write("shop/features", "1", day, frame(3))
    broken = store.manifest("shop/features", "1", D2)
    client = s3.client()
    key = f"loopline/shop/features/v=1/ds=2013-01-02/{broken.files[0]}"
    client.put_object(Bucket=bucket, Key=key, Body=b"PAR1 truncated")
    client.put_object(Bucket=bucket, Key="loopline/shop/features/v=1/ds=2013-01-03/part-00000-killed.parquet",
                      Body=b"an upload whose writer died")
    with pytest.raises(CorruptPartitionError, match=rf"day 2013-01-02 .*s3://{bucket}/{key}: not a readable Parquet"):
        store.read_range("shop/features", "1", D1, D3)
    report = store.verify("shop/features")
    assert [c.ok for c in report.partitions] == [True, False, True]
    assert report.partitions[2].leftovers == ["part-00000-killed.parquet"]

    store.verify("shop/features", fix=True, grace=dt.timedelta(0))
    assert store.days("shop/features", "1") == [D1, D3]
    assert s3.keys(bucket, "loopline/_quarantine/shop/features/v=1/ds=2013-01-02/")
    assert day_keys(s3, bucket, D3, "shop/features") == sorted([MANIFEST, *store.manifest("shop/features", "1",
                                                                                           D3).files])
    assert len(store.read_range("shop/features", "1", D1, D3)) == 6
    store.write("shop/features", "1", D2, frame(2))  # the rebuild
    assert store.verify().ok


def test_readers_on_s3_see_the_old_day_or_the_new_one_while_it_is_rewritten(core_settings: Settings) -> None:
    import threading

    writer = store_for(core_settings)
    writer.write("features", "1", D1, frame(10))
    stop, seen, errors = threading.Event(), [], []

    def read_in_a_loop() -> None:
        reader = store_for(core_settings)  # another client, as another process would have
        try:
            while not stop.is_set():
                got = reader.read("features", "1", D1)
                offset = int(got["id"].iloc[0])
                assert got["id"].tolist() == list(range(offset, offset + 10 + offset // 100))
                seen.append(offset)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read_in_a_loop)
    thread.start()
    for i in range(1, 16):
        writer.write("features", "1", D1, frame(10 + i, offset=100 * i))
    stop.set()
    thread.join(timeout=120)
    assert not errors, errors[0]
    assert len(set(seen)) > 2
