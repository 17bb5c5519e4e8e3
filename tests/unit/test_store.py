from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from loopline.store import ContentHasher, PartitionNotFoundError, PartitionStore, as_day, content_hash

pytestmark = pytest.mark.unit


def frame(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"id": range(offset, offset + n), "x": [float(i) / 3 for i in range(n)],
                         "c": pd.Series([f"k{i % 4}" for i in range(n)], dtype="string")})


@pytest.fixture
def store(tmp_path: Path) -> PartitionStore:
    return PartitionStore((tmp_path / "root").as_uri())


def test_layout_manifest_and_round_trip(store: PartitionStore, tmp_path: Path) -> None:
    m = store.write("features", "1", "2013-01-02", frame(10))
    folder = tmp_path / "root" / "features" / "v=1" / "ds=2013-01-02"
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", "part-00000.parquet"]
    assert (m.rows, m.ds, m.version) == (10, "2013-01-02", "1")
    assert [c["name"] for c in m.schema] == ["id", "x", "c"]
    assert store.manifest("features", "1", dt.date(2013, 1, 2)) == m
    pd.testing.assert_frame_equal(store.read("features", "1", "2013-01-02"), frame(10), check_dtype=False)
    assert store.uri("features", "1", "2013-01-02").endswith("/root/features/v=1/ds=2013-01-02")


def test_rewrite_replaces_and_is_idempotent(store: PartitionStore) -> None:
    first = store.write("f", "1", "2013-01-02", frame(10))
    again = store.write("f", "1", "2013-01-02", frame(10))
    assert again.content_hash == first.content_hash
    smaller = store.write("f", "1", "2013-01-02", frame(3, offset=100))
    assert smaller.content_hash != first.content_hash
    assert store.read("f", "1", "2013-01-02")["id"].tolist() == [100, 101, 102]  # replaced, not appended


def test_content_hash_ignores_batching() -> None:
    whole = frame(100)
    h = ContentHasher()
    for start in range(0, 100, 33):
        h.update(whole.iloc[start:start + 33])
    assert h.hexdigest() == content_hash(whole)
    assert content_hash(whole.iloc[::-1]) != content_hash(whole)


def test_failed_write_leaves_previous_partition_and_no_temp(store: PartitionStore, tmp_path: Path) -> None:
    store.write("f", "1", "2013-01-02", frame(5))

    def exploding() -> Iterator[pd.DataFrame]:
        yield frame(5, offset=50)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed"):
        store.write_batches("f", "1", "2013-01-02", exploding())
    assert store.read("f", "1", "2013-01-02")["id"].tolist() == [0, 1, 2, 3, 4]
    leftovers = [p.name for p in (tmp_path / "root" / "f" / "v=1").iterdir()]
    assert leftovers == ["ds=2013-01-02"]
    with pytest.raises(RuntimeError):
        store.write_batches("f", "1", "2013-01-03", exploding())
    assert not store.exists("f", "1", "2013-01-03")


def test_uncommitted_partition_is_invisible(store: PartitionStore, tmp_path: Path) -> None:
    store.write("f", "1", "2013-01-01", frame(2))
    half = tmp_path / "root" / "f" / "v=1" / "ds=2013-01-05"
    half.mkdir(parents=True)
    (half / "part-00000.parquet").write_bytes(b"garbage")
    assert store.days("f", "1") == [dt.date(2013, 1, 1)]
    with pytest.raises(PartitionNotFoundError, match="ds=2013-01-05"):
        store.read("f", "1", "2013-01-05")


def test_versions_are_separate_and_range_reads_skip_gaps(store: PartitionStore) -> None:
    store.write("f", "1", "2013-01-01", frame(2))
    store.write("f", "1", "2013-01-03", frame(3, offset=10))
    store.write("f", "2", "2013-01-01", frame(7))
    assert store.days("f", "2") == [dt.date(2013, 1, 1)]
    got = store.read_range("f", "1", "2013-01-01", "2013-01-31")
    assert got["id"].tolist() == [0, 1, 10, 11, 12]
    with pytest.raises(PartitionNotFoundError):
        store.read_range("f", "1", "2013-02-01", "2013-02-02")


def test_iter_batches_is_bounded(store: PartitionStore) -> None:
    store.write("f", "1", "2013-01-01", frame(1000))
    sizes = [b.num_rows for b in store.iter_batches("f", "1", "2013-01-01", batch_rows=128)]
    assert max(sizes) <= 128 and sum(sizes) == 1000


def test_side_files_do_not_touch_the_partition(store: PartitionStore) -> None:
    uri = store.write_side_file("validation", "features", "1", "2013-01-01", "gx_result.json", '{"ok": true}')
    assert uri.endswith("/_validation/features/v=1/ds=2013-01-01/gx_result.json")
    assert store.read_side_file("validation", "features", "1", "2013-01-01", "gx_result.json") == b'{"ok": true}'
    assert not store.exists("features", "1", "2013-01-01")


def test_as_day_rejects_garbage() -> None:
    assert as_day(dt.datetime(2013, 5, 1, 23, 0)) == dt.date(2013, 5, 1)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        as_day("May first")


# -- object stores (no rename): the same contract through fsspec's in-memory filesystem ----------------------
@pytest.fixture
def object_store(tmp_path: Path) -> Iterator[PartitionStore]:
    store = PartitionStore(f"memory://loopline-{tmp_path.name}/root")
    assert not store._local  # the object-store commit path, as on s3:// and gs://
    yield store
    store.fs.rm(f"/loopline-{tmp_path.name}", recursive=True)


def test_object_store_commit_is_the_manifest_and_old_files_go_after_it(object_store: PartitionStore,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = object_store
    first = store.write("f", "1", "2013-01-02", frame(5))
    folder = store._path("f", "1", "2013-01-02")
    assert sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)) == sorted(
        ["_manifest.json", *first.files])
    assert first.files[0].startswith("part-00000-") and first.files[0] != "part-00000.parquet"

    # Killed after its data upload, before its manifest: the committed day does not move, the upload is removed.
    real_open = store.fs.open

    def no_manifest(path: str, mode: str = "rb", **kwargs: object) -> object:
        if path.endswith("_manifest.json") and "w" in mode:
            raise KeyboardInterrupt("killed before the commit")
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(store.fs, "open", no_manifest)
    with pytest.raises(KeyboardInterrupt):
        store.write("f", "1", "2013-01-02", frame(3, offset=100))
    monkeypatch.setattr(store.fs, "open", real_open)
    assert store.manifest("f", "1", "2013-01-02") == first
    assert len(store.fs.ls(folder, detail=False)) == 2

    # The old data file cannot be deleted after the commit (or the writer dies there): the new day is whole and
    # stays, the old file is left unlisted.
    def refuse_rm(*args: object, **kwargs: object) -> None:
        raise OSError("503 Slow Down")

    monkeypatch.setattr(store.fs, "rm", refuse_rm)
    second = store.write("f", "1", "2013-01-02", frame(3, offset=100))
    monkeypatch.undo()
    assert store.manifest("f", "1", "2013-01-02") == second
    assert store.read("f", "1", "2013-01-02")["id"].tolist() == [100, 101, 102]
    assert sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)) == sorted(
        ["_manifest.json", *first.files, *second.files])
    assert store.days("f", "1") == [dt.date(2013, 1, 2)]
    third = store.write("f", "1", "2013-01-02", frame(1))  # the next re-write deletes what it replaces
    assert sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)) == sorted(
        ["_manifest.json", *first.files, *third.files])
