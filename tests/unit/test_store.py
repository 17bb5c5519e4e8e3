"""The partition store: layout, transactions, checks on read, ``verify`` and cleaning.

Most contracts run twice: on a local folder and on an in-memory filesystem that behaves like S3 (no rename, a
file exists only once its PUT completes), the two commit paths of the store.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pytest
from fsspec.implementations.memory import MemoryFile, MemoryFileSystem
from loopline import store as store_module
from loopline.project import Project
from loopline.store import (
    MANIFEST,
    PART,
    ContentHasher,
    CorruptPartitionError,
    PartitionError,
    PartitionNotFoundError,
    PartitionStore,
    as_day,
    check_dataset_name,
    content_hash,
)

pytestmark = pytest.mark.unit
D1, D2, D3 = dt.date(2013, 1, 1), dt.date(2013, 1, 2), dt.date(2013, 1, 3)
HOUR = 3600


def frame(n: int, offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"id": range(offset, offset + n), "x": [float(i) / 3 for i in range(n)],
                         "c": pd.Series([f"k{i % 4}" for i in range(n)], dtype="string")})


@pytest.fixture
def store(tmp_path: Path) -> PartitionStore:
    return PartitionStore((tmp_path / "root").as_uri())


def test_layout_manifest_and_round_trip(store: PartitionStore, tmp_path: Path) -> None:
    m = store.write("features", "1", "2013-01-02", frame(10))
    folder = tmp_path / "root" / "features" / "v=1" / "ds=2013-01-02"
    assert sorted(p.name for p in folder.iterdir()) == ["_manifest.json", *m.files]
    assert len(m.files) == 1 and m.files[0].startswith("part-00000-") and m.files[0].endswith(".parquet")
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
    assert store.verify().ok
    folder = store._path("f", "1", "2013-01-02")
    assert sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)) == sorted(
        [MANIFEST, *smaller.files])  # the replaced data files are gone


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
    assert len(list((tmp_path / "root" / "f" / "v=1" / "ds=2013-01-02").iterdir())) == 2  # manifest + its file
    with pytest.raises(RuntimeError):
        store.write_batches("f", "1", "2013-01-03", exploding())
    assert not store.exists("f", "1", "2013-01-03")
    assert not (tmp_path / "root" / "f" / "v=1" / "ds=2013-01-03").exists()
    with pytest.raises(ValueError, match="no batches"):
        store.write_batches("f", "1", "2013-01-03", [])
    assert store.days("f", "1") == [dt.date(2013, 1, 2)]


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


# -- object stores (no rename): the same contract through an in-memory filesystem that behaves like S3 ----------
class _PutOnClose(io.BytesIO):
    """An upload: the object appears, whole, when the file is closed (fsspec's memory:// shows it at open)."""

    def __init__(self, fs: S3LikeMemoryFileSystem, path: str) -> None:
        super().__init__()
        self.fs, self.path = fs, path

    def close(self) -> None:
        if not self.closed:
            MemoryFile(self.fs, self.path, self.getvalue()).commit()
        super().close()

    def __del__(self) -> None:  # dropped without close() (its writer was killed): the upload never completed
        io.BytesIO.close(self)


class S3LikeMemoryFileSystem(MemoryFileSystem):
    """fsspec's memory filesystem with S3's semantics where the store relies on them: a PUT is atomic, and
    every read gets its own handle (an object deleted meanwhile stays readable through it, like an open fd)."""

    protocol = "s3like"
    store: ClassVar[dict[str, Any]] = {}
    pseudo_dirs: ClassVar[list[str]] = [""]

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(super()._strip_protocol(path.removeprefix("s3like://")))

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        path = self._strip_protocol(path)
        if mode in ("wb", "xb") and "data" not in kwargs:  # pipe_file passes data: one PUT already
            return _PutOnClose(self, path)
        if mode == "rb" and path in self.store:
            return MemoryFile(self, path, self.store[path].getvalue())
        return super()._open(path, mode, **kwargs)


@pytest.fixture
def object_store(tmp_path: Path) -> Iterator[PartitionStore]:
    fs = S3LikeMemoryFileSystem(skip_instance_cache=True)
    store = PartitionStore(f"s3like://loopline-{tmp_path.name}/root", fs=fs)
    assert not store._local  # the object-store commit path, as on s3:// and gs://
    yield store
    fs.rm(f"/loopline-{tmp_path.name}", recursive=True)


@pytest.fixture(params=["local", "object"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> PartitionStore:
    """Each commit path: a local folder (os.replace) and an object store (one PUT)."""
    if request.param == "local":
        return PartitionStore((tmp_path / "root").as_uri())
    store: PartitionStore = request.getfixturevalue("object_store")
    return store


def names_in(store: PartitionStore, folder: str) -> list[str]:
    try:
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False))
    except FileNotFoundError:
        return []


def age(store: PartitionStore, path: str, seconds: float) -> None:
    """Make a file look last modified ``seconds`` ago."""
    if store._local:
        then = time.time() - seconds
        os.utime(path, (then, then))
        return
    store.fs.store[store.fs._strip_protocol(path)].created = (
        dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds))


def test_object_store_commit_is_the_manifest_and_old_files_go_after_it(object_store: PartitionStore,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = object_store
    first = store.write("f", "1", "2013-01-02", frame(5))
    folder = store._path("f", "1", "2013-01-02")
    assert sorted(p.rsplit("/", 1)[-1] for p in store.fs.ls(folder, detail=False)) == sorted(
        ["_manifest.json", *first.files])
    assert first.files[0].startswith("part-00000-") and first.files[0] != "part-00000.parquet"

    # Killed after its data upload, before its manifest: the committed day does not move, the upload is removed.
    real_pipe = store.fs.pipe_file

    def no_manifest(path: str, value: bytes, **kwargs: object) -> object:
        if path.endswith("_manifest.json"):
            raise KeyboardInterrupt("killed before the commit")
        return real_pipe(path, value, **kwargs)

    monkeypatch.setattr(store.fs, "pipe_file", no_manifest)
    with pytest.raises(KeyboardInterrupt):
        store.write("f", "1", "2013-01-02", frame(3, offset=100))
    monkeypatch.setattr(store.fs, "pipe_file", real_pipe)
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


# -- dataset names ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["features", "shop/features", "shop/returned/predictions", "a.b-c_d/e1", "9x"])
def test_dataset_names_are_path_segments(name: str) -> None:
    assert check_dataset_name(name) == name


@pytest.mark.parametrize("name", ["", "Features", "_features", ".x", "a//b", "a/", "/a", "../a", "a/../b",
                                  "a/./b", "a b", "a/v=1", "a\\b", "shop/_tmp"])
def test_dataset_names_that_are_not(store: PartitionStore, name: str) -> None:
    with pytest.raises(ValueError, match="is not a dataset name"):
        store.write(name, "1", D1, frame(1))
    with pytest.raises(ValueError, match="is not a dataset name"):
        store.days(name, "1")


def test_nested_dataset_names_keep_their_days_apart(any_store: PartitionStore) -> None:
    store = any_store
    store.write("shop/features", "1", D1, frame(2))
    store.write("shop/features", "1", D2, frame(3))
    store.write("shop/returned/predictions", "1", D1, frame(4))
    store.write("shop", "1", D3, frame(5))  # a dataset whose name is a prefix of the others
    store.write("shop/features", "2", D3, frame(6))
    assert store.days("shop/features", "1") == [D1, D2]
    assert store.days("shop/features", "2") == [D3]
    assert store.days("shop/returned/predictions", "1") == [D1]
    assert store.days("shop", "1") == [D3]
    assert store.days("shop/returned", "1") == []
    assert store.uri("shop/returned/predictions", "1", D1).endswith("/shop/returned/predictions/v=1/ds=2013-01-01")
    assert len(store.read_range("shop/features", "1", D1, D3)) == 5
    assert [len(b) for b in store.iter_batches("shop/returned/predictions", "1", D1, 3)] == [3, 1]
    report = store.verify()
    assert report.ok
    assert sorted((c.dataset, c.version, c.ds) for c in report.partitions) == [
        ("shop", "1", "2013-01-03"), ("shop/features", "1", "2013-01-01"), ("shop/features", "1", "2013-01-02"),
        ("shop/features", "2", "2013-01-03"), ("shop/returned/predictions", "1", "2013-01-01")]
    assert [c.ds for c in store.verify("shop").partitions] == ["2013-01-03"]
    assert len(store.verify("shop/features").partitions) == 3


# -- partitions of the earlier layout ---------------------------------------------------------------------------
def legacy_day(store: PartitionStore, dataset: str, day: dt.date, data: pd.DataFrame) -> str:
    """A partition as earlier releases wrote it: ``part-00000.parquet``, listed by the manifest."""
    manifest = store.write(dataset, "1", day, data)
    folder = store._path(dataset, "1", day)
    store.fs.mv(f"{folder}/{manifest.files[0]}", f"{folder}/{PART}")
    body = json.loads(store.fs.cat_file(f"{folder}/{MANIFEST}"))
    store.fs.pipe_file(f"{folder}/{MANIFEST}", json.dumps({**body, "files": [PART]}).encode())
    return folder


def test_partitions_of_the_earlier_layout_read_verify_and_get_replaced(any_store: PartitionStore) -> None:
    store = any_store
    folder = legacy_day(store, "f", D1, frame(7))
    assert names_in(store, folder) == [MANIFEST, PART]
    assert store.read("f", "1", D1)["id"].tolist() == list(range(7))
    assert store.read("f", "1", D1, verify_hash=True)["id"].tolist() == list(range(7))
    assert sum(len(b) for b in store.iter_batches("f", "1", D1, 3)) == 7
    assert len(store.read_range("f", "1", D1, D2)) == 7
    assert store.verify().ok
    new = store.write("f", "1", D1, frame(2, offset=50))
    assert names_in(store, folder) == sorted([MANIFEST, *new.files])  # part-00000.parquet went with its manifest
    assert store.read("f", "1", D1)["id"].tolist() == [50, 51]


# -- every read checks the partition against its manifest -----------------------------------------------------
def _set_manifest(**changes: Any) -> Callable[[PartitionStore, str, list[str]], None]:
    def corrupt(store: PartitionStore, folder: str, files: list[str]) -> None:
        body = json.loads(store.fs.cat_file(f"{folder}/{MANIFEST}"))
        for key, value in changes.items():
            if value is _DROP:
                del body[key]
            else:
                body[key] = value(body) if callable(value) else value
        store.fs.pipe_file(f"{folder}/{MANIFEST}", json.dumps(body).encode())
    return corrupt


def _set_data(make: Callable[[bytes], bytes]) -> Callable[[PartitionStore, str, list[str]], None]:
    def corrupt(store: PartitionStore, folder: str, files: list[str]) -> None:
        path = f"{folder}/{files[0]}"
        store.fs.pipe_file(path, make(store.fs.cat_file(path)))
    return corrupt


def _raw_manifest(data: bytes) -> Callable[[PartitionStore, str, list[str]], None]:
    def corrupt(store: PartitionStore, folder: str, files: list[str]) -> None:
        store.fs.pipe_file(f"{folder}/{MANIFEST}", data)
    return corrupt


def _delete_data(store: PartitionStore, folder: str, files: list[str]) -> None:
    store.fs.rm(f"{folder}/{files[0]}")


_DROP = object()
DATA, MAN = "data", MANIFEST  # which file the error must name: the day's data file, or the manifest
CORRUPTIONS: dict[str, tuple[Callable[[PartitionStore, str, list[str]], None], str, str]] = {
    "truncated parquet": (_set_data(lambda b: b[: len(b) // 2]), DATA, "not a readable Parquet file"),
    "parquet cut before its footer": (_set_data(lambda b: b[:-9]), DATA, "not a readable Parquet file"),
    "zero bytes": (_set_data(lambda b: b""), DATA, "not a readable Parquet file.*0 bytes"),
    "random bytes": (_set_data(lambda b: random.Random(7).randbytes(len(b))), DATA, "not a readable Parquet file"),
    "data file deleted": (_delete_data, DATA, "listed by the manifest but missing"),
    "manifest is JSON garbage": (_raw_manifest(b'{"rows": 10, "files": ['), MAN, "unreadable: not valid JSON"),
    "manifest is empty": (_raw_manifest(b""), MAN, "unreadable: not valid JSON"),
    "manifest is not UTF-8": (_raw_manifest(b"\xff\xfe\x00garbage"), MAN, "unreadable: not UTF-8"),
    "manifest is a JSON list": (_raw_manifest(b"[1, 2]"), MAN, "unreadable: not a JSON object but a list"),
    "manifest without rows": (_set_manifest(rows=_DROP), MAN, "unreadable: missing key.*rows"),
    "manifest without files": (_set_manifest(files=_DROP, schema=_DROP), MAN, "missing key.*schema, files"),
    "manifest rows not a number": (_set_manifest(rows="ten"), MAN, "unreadable: wrong type: rows is str"),
    "manifest rows negative": (_set_manifest(rows=-1), MAN, "unreadable: rows is -1"),
    "manifest lists no file": (_set_manifest(files=[]), MAN, "unreadable: files must name"),
    "manifest lists a path outside the day": (_set_manifest(files=["../x.parquet"]), MAN, "files must name"),
    "manifest lists a missing file": (_set_manifest(files=["part-00000-gone.parquet"]), "part-00000-gone.parquet",
                                      "listed by the manifest but missing"),
    "manifest of another day": (_set_manifest(ds="2013-01-09"), MAN, "describes day 2013-01-09, not 2013-01-02"),
    "row count mismatch": (_set_manifest(rows=lambda m: m["rows"] + 1), DATA, "holds 4 rows; the manifest says 5"),
    "column type mismatch": (_set_manifest(schema=lambda m: [{**m["schema"][0], "type": "string"},
                                                               *m["schema"][1:]]),
                             DATA, "schema differs.*id is int64 in the data, string in the manifest"),
    "column missing from the data": (_set_manifest(schema=lambda m: [*m["schema"], {"name": "y", "type": "double"}]),
                                     DATA, "schema differs.*column\\(s\\) y missing from the data"),
    "column not in the manifest": (_set_manifest(schema=lambda m: m["schema"][:-1]), DATA,
                                   "schema differs.*column\\(s\\) c not in the manifest"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_broken_day_is_named_by_every_read_and_quarantined_by_verify_fix(any_store: PartitionStore,
                                                                        case: str) -> None:
    store, (corrupt, file, what) = any_store, CORRUPTIONS[case]
    dataset = "shop/features"
    for i, day in enumerate((D1, D2, D3)):
        store.write(dataset, "1", day, frame(3 + i, offset=10 * i))
    folder = store._path(dataset, "1", D2)
    files = store.manifest(dataset, "1", D2).files
    corrupt(store, folder, files)
    file = files[0] if file == DATA else file
    named = rf"dataset 'shop/features' day 2013-01-02 \(v=1\): .*/ds=2013-01-02/{file}: .*{what}"

    with pytest.raises(CorruptPartitionError, match=named) as raised:
        store.read(dataset, "1", D2)
    assert (raised.value.dataset, raised.value.ds, raised.value.file) == (dataset, "2013-01-02", file)
    assert "loopline store verify --dataset shop/features --fix" in str(raised.value)
    with pytest.raises(CorruptPartitionError, match=named):
        list(store.iter_batches(dataset, "1", D2, batch_rows=2))
    with pytest.raises(CorruptPartitionError, match=named) as in_range:  # the window says which day
        store.read_range(dataset, "1", D1, D3)
    assert [p.ds for p in in_range.value.problems] == ["2013-01-02"]
    assert store.days(dataset, "1") == [D1, D2, D3] and store.exists(dataset, "1", D2)  # committed, but broken
    assert store.read(dataset, "1", D1)["id"].tolist() == [0, 1, 2]  # the other days are fine

    report = store.verify(dataset)
    assert not report.ok
    assert [(c.ds, c.ok) for c in report.partitions] == [("2013-01-01", True), ("2013-01-02", False),
                                                         ("2013-01-03", True)]
    assert [p.file for p in report.partitions[1].problems] == [file]

    # --fix quarantines the day: it reads as never written, the window reads the others, a rebuild writes it.
    fixed = store.verify(dataset, fix=True, grace=dt.timedelta(0)).partitions[1]
    assert fixed.fixed and fixed.fixed[0].startswith(f"quarantined to {store.root}/_quarantine/shop/features/v=1/"
                                                     "ds=2013-01-02/")
    quarantined = fixed.fixed[0].split(" to ", 1)[1].split(";")[0]
    assert MANIFEST in names_in(store, store.fs._strip_protocol(quarantined))
    assert not store.exists(dataset, "1", D2) and store.days(dataset, "1") == [D1, D3]
    assert names_in(store, folder) == []
    assert store.read_range(dataset, "1", D1, D3)["id"].tolist() == [0, 1, 2, 20, 21, 22, 23, 24]
    assert store.verify().ok  # the quarantine is not a dataset
    store.write(dataset, "1", D2, frame(2, offset=99))
    assert store.read(dataset, "1", D2)["id"].tolist() == [99, 100]


def test_the_content_hash_is_checked_on_verify_and_on_demand(any_store: PartitionStore) -> None:
    store = any_store
    store.write("f", "1", D1, frame(5))
    _set_manifest(content_hash="0" * 64)(store, store._path("f", "1", D1), [])
    assert len(store.read("f", "1", D1)) == 5  # an ordinary read checks the footers only
    assert len(store.read_range("f", "1", D1, D1)) == 5
    with pytest.raises(CorruptPartitionError, match=r"day 2013-01-01 .*content hash [0-9a-f]{16}… differs from the "
                                                    r"manifest's 0000000000000000…"):
        store.read("f", "1", D1, verify_hash=True)
    with pytest.raises(ValueError, match="every column"):
        store.read("f", "1", D1, ["id"], verify_hash=True)
    assert store.verify(content=False).ok
    problems = store.verify().partitions[0].problems
    assert len(problems) == 1 and "content hash" in problems[0].what


def test_the_content_hash_survives_the_round_trip_of_every_dtype(any_store: PartitionStore) -> None:
    store = any_store
    data = pd.DataFrame({
        "i": [1, 2, 3], "f": [0.5, None, 2.0], "s": pd.Series(["a", None, "c"], dtype="string"), "str": ["x", "y", "z"],
        "o": pd.Series(["x", None, "z"], dtype=object),  # read back as str by pandas 3: the hash must not care
        "d": pd.Series(list(pd.to_datetime(["2013-01-01"] * 3).date), dtype=object),
        "b": [True, False, True], "n": pd.array([1, None, 3], dtype="Int64"),
        "cat": pd.Categorical(["u", "v", "u"]), "t": pd.to_datetime(["2013-01-01"] * 3).tz_localize("UTC"),
    })
    store.write("f", "1", D1, data)
    store.write_batches("f", "1", D2, [data.iloc[:0]])  # an empty day: its hash covers the schema only
    assert len(store.read("f", "1", D1, verify_hash=True)) == 3
    assert store.verify().ok


def test_real_feature_partitions_verify(bikes_store: PartitionStore) -> None:
    report = bikes_store.verify()  # read-only: no fix
    assert report.ok and len(report.partitions) == 40
    assert {c.dataset for c in report.partitions} == {"bikes/features"}


def test_a_window_names_every_broken_day_and_still_skips_days_never_written(store: PartitionStore) -> None:
    for day in (D1, D2, D3, dt.date(2013, 1, 5)):
        store.write("f", "1", day, frame(2))
    for day in (D2, dt.date(2013, 1, 5)):
        _set_data(lambda b: b"")(store, store._path("f", "1", day), store.manifest("f", "1", day).files)
    with pytest.raises(CorruptPartitionError) as raised:
        store.read_range("f", "1", D1, dt.date(2013, 1, 6))
    assert [p.ds for p in raised.value.problems] == ["2013-01-02", "2013-01-05"]
    assert "(2013-01-02, 2013-01-05)" in str(raised.value)
    assert len(store.read_range("f", "1", D3, dt.date(2013, 1, 4))) == 2  # 01-04 was never written: skipped


def test_training_and_drift_windows_fail_on_a_broken_day(bikes: Project, bikes_store: PartitionStore,
                                                         tmp_path: Path) -> None:
    from loopline.monitoring import _window
    from loopline.steps import monitored_spec
    from loopline.training import TrainingWindow, load_window_of

    m = monitored_spec(bikes, "duration")
    features = m.features_dataset
    store = PartitionStore(tmp_path.as_uri())  # a scratch copy: the shared fixture stays read-only
    days = [dt.date(2022, 3, 20) + dt.timedelta(days=i) for i in range(3)]
    for day in days:
        store.write(features, "2", day, bikes_store.read(features, "2", day))
    _set_data(lambda b: b[:100])(store, store._path(features, "2", days[1]),
                                 store.manifest(features, "2", days[1]).files)
    with pytest.raises(CorruptPartitionError, match="features' day 2022-03-21"):
        load_window_of(store, features, "2", TrainingWindow.ending(days[-1], 3, 1))
    with pytest.raises(CorruptPartitionError, match="features' day 2022-03-21"):
        _window(store, m, days, "1")


def test_a_requested_column_that_is_not_there_is_the_callers_error(store: PartitionStore) -> None:
    store.write("f", "1", D1, frame(3))
    with pytest.raises(ValueError, match=r"ds=2013-01-01 has no column\(s\) nope; it has c, id, x"):
        store.read("f", "1", D1, ["id", "nope"])
    with pytest.raises(ValueError, match="nope"):
        list(store.iter_batches("f", "1", D1, 2, columns=["nope"]))


def test_corrupt_partition_error_pickles(store: PartitionStore) -> None:
    import pickle

    store.write("f", "1", D1, frame(3))
    _set_data(lambda b: b"x")(store, store._path("f", "1", D1), store.manifest("f", "1", D1).files)
    with pytest.raises(CorruptPartitionError) as raised:
        store.read("f", "1", D1)
    again = pickle.loads(pickle.dumps(raised.value))
    assert str(again) == str(raised.value) and again.problems == raised.value.problems
    assert isinstance(raised.value, PartitionError) and not isinstance(raised.value, FileNotFoundError)


# -- a re-write never makes the day disappear ----------------------------------------------------------------
class Killed(KeyboardInterrupt):
    """The writer process died here."""


class KillSwitch:
    """Counts the writer's filesystem steps; at step ``at`` the writer dies: that step and every later one fail
    (``dead_after``: a SIGKILL, nothing more happens) or only that one fails (a plain error; cleanup runs)."""

    def __init__(self, at: int, sigkill: bool) -> None:
        self.at, self.sigkill, self.steps, self.dead = at, sigkill, [], False
        self.failed_at: str | None = None

    def tick(self, step: str) -> None:
        if self.dead and self.sigkill:
            raise Killed(f"already dead at {step}")
        self.steps.append(step)
        if len(self.steps) == self.at:
            self.dead, self.failed_at = True, step
            raise Killed(step) if self.sigkill else OSError(f"failed at {step}")


class KillableFile:
    def __init__(self, fh: Any, switch: KillSwitch, path: str, mode: str) -> None:
        self._fh, self._switch, self._path, self._mode = fh, switch, path, mode

    def write(self, data: Any) -> Any:
        self._switch.tick(f"write {self._path}")
        return self._fh.write(data)

    def close(self) -> None:
        self._switch.tick(f"close-{self._mode} {self._path}")
        self._fh.close()

    def __enter__(self) -> KillableFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


class KillableFileSystem:
    def __init__(self, fs: Any, switch: KillSwitch) -> None:
        self._fs, self._switch = fs, switch

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._fs, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def step(*args: Any, **kwargs: Any) -> Any:
            self._switch.tick(f"fs.{name} {args[0] if args else ''}")
            out = attr(*args, **kwargs)
            if name == "open":
                return KillableFile(out, self._switch, str(args[0]), str(args[1] if len(args) > 1 else "rb"))
            return out
        return step


class KillableOs:
    """``os`` as the store module sees it, with the calls that change files counted as steps."""

    def __init__(self, switch: KillSwitch) -> None:
        self._switch = switch

    def __getattr__(self, name: str) -> Any:
        attr = getattr(os, name)
        if name not in ("replace", "remove", "rmdir", "fsync"):
            return attr

        def step(*args: Any, **kwargs: Any) -> Any:
            self._switch.tick(f"os.{name} {args[0]}")
            return attr(*args, **kwargs)
        return step


def _committed_before(switch: KillSwitch) -> bool:
    """Whether the commit step (os.replace of the manifest; the manifest PUT completing) ran before the failure."""
    done = switch.steps[: switch.at - 1] if switch.dead else switch.steps
    return any(s.startswith("os.replace") or (s.startswith("fs.pipe_file") and s.endswith(MANIFEST)) for s in done)


@pytest.mark.parametrize("sigkill", [True, False], ids=["killed", "failed"])
def test_a_rewrite_stopped_at_any_step_leaves_the_old_day_whole(any_store: PartitionStore, sigkill: bool,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    reader = any_store
    folder = reader._path("f", "1", D2)
    old = reader.write("f", "1", D2, frame(5))
    reader.write("f", "1", D1, frame(1))
    old_frame = reader.read("f", "1", D2)
    new_frame = frame(300, offset=1000)
    steps = 0
    for at in range(1, 200):
        switch = KillSwitch(at, sigkill)
        writer = PartitionStore(reader.root, fs=KillableFileSystem(reader.fs, switch))
        writer._local = reader._local
        with monkeypatch.context() as m:
            m.setattr(store_module, "os", KillableOs(switch))
            try:
                writer.write_batches("f", "1", D2, [new_frame.iloc[:150], new_frame.iloc[150:]])
                raised = False
            except (Killed, OSError):
                raised = True
        if not switch.dead:
            break  # the write ran to the end: every step has been stopped once
        steps += 1
        got = reader.read("f", "1", D2)
        assert reader.days("f", "1") == [D1, D2], switch.failed_at
        if _committed_before(switch):
            pd.testing.assert_frame_equal(got, new_frame, check_dtype=False)
            assert not raised or sigkill  # after its commit a write reports success (housekeeping only)
        else:
            pd.testing.assert_frame_equal(got, old_frame)  # the old day, read identically
            assert reader.manifest("f", "1", D2) == old
            assert raised
            if not sigkill:  # a failure that lets the writer clean up leaves nothing behind
                assert names_in(reader, folder) == sorted([MANIFEST, *old.files]), switch.failed_at
        # Back to the old day for the next step (the store's own write: a fresh start).
        reader.write("f", "1", D2, old_frame)
        old = reader.manifest("f", "1", D2)
    assert steps > 10, switch.steps  # the data writes, the manifest, the commit, the deletions were all hit
    # What killed writers left is invisible and goes with the grace period.
    report = reader.verify(fix=True, grace=dt.timedelta(0))
    assert report.ok
    assert names_in(reader, folder) == sorted([MANIFEST, *reader.manifest("f", "1", D2).files])
    pd.testing.assert_frame_equal(reader.read("f", "1", D2), new_frame, check_dtype=False)


def test_a_killed_first_write_leaves_no_day(any_store: PartitionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = any_store
    for at in range(1, 50):
        switch = KillSwitch(at, sigkill=True)
        writer = PartitionStore(reader.root, fs=KillableFileSystem(reader.fs, switch))
        writer._local = reader._local
        with monkeypatch.context() as m:
            m.setattr(store_module, "os", KillableOs(switch))
            try:
                writer.write("f", "1", D3, frame(4))
            except Killed:
                pass
        if not switch.dead:
            break
        if not _committed_before(switch):
            assert reader.days("f", "1") == [] and not reader.exists("f", "1", D3)
            with pytest.raises(PartitionNotFoundError):
                reader.read("f", "1", D3)
        reader.delete("f", "1", D3)
    assert reader.read("f", "1", D3)["id"].tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", ["local", "object"])
def test_readers_never_see_a_missing_or_partial_day_while_it_is_rewritten(kind: str, tmp_path: Path,
                                                                         request: pytest.FixtureRequest) -> None:
    if kind == "local":
        writer = PartitionStore((tmp_path / "root").as_uri())
    else:
        writer = request.getfixturevalue("object_store")
    versions = [frame(20 + 7 * i, offset=1000 * i) for i in range(60)]
    writer.write("f", "1", D1, versions[0])
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def whole(got: pd.DataFrame) -> int:
        i = int(got["id"].iloc[0]) // 1000
        pd.testing.assert_frame_equal(got.reset_index(drop=True), versions[i], check_dtype=False)
        return i

    def read_in_a_loop(streamed: bool) -> None:
        reader = PartitionStore(writer.root, fs=None if writer._local else writer.fs)
        try:
            while not stop.is_set():
                if streamed:
                    batches = list(reader.iter_batches("f", "1", D1, batch_rows=16))
                    seen.append(whole(pd.concat([b.to_pandas() for b in batches], ignore_index=True)))
                else:
                    seen.append(whole(reader.read("f", "1", D1)))
                assert reader.days("f", "1") == [D1]
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read_in_a_loop, args=(streamed,)) for streamed in (False, True)]
    for t in readers:
        t.start()
    for version in versions[1:]:
        writer.write("f", "1", D1, version)
    stop.set()
    for t in readers:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert len(set(seen)) > 3, "the readers saw too few re-writes to mean anything"
    assert len(names_in(writer, writer._path("f", "1", D1))) == 2  # each commit deleted what it replaced


def test_a_read_that_loses_the_race_against_a_rewrite_reads_the_new_day(any_store: PartitionStore,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = any_store
    store.write("f", "1", D1, frame(3))
    other_process = PartitionStore(store.root, fs=store.fs)
    real_open = store.fs.open
    raced = []

    def open_after_a_rewrite(path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if path.endswith(".parquet") and not raced:  # between reading the manifest and opening its data file
            raced.append(path)
            monkeypatch.setattr(store.fs, "open", real_open)
            other_process.write("f", "1", D1, frame(4, offset=40))  # deletes the file this read was about to open
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(store.fs, "open", open_after_a_rewrite)
    assert store.read("f", "1", D1)["id"].tolist() == [40, 41, 42, 43]
    assert raced
    assert not store.fs.exists(raced[0])


# -- leftovers of killed writes ---------------------------------------------------------------------------------
def plant_leftovers(store: PartitionStore, seconds_old: float) -> dict[str, str]:
    """What killed writers leave, aged ``seconds_old``: unlisted data file, temporary manifest, an uncommitted
    day, and a temporary folder of the rename-based layout of earlier releases."""
    base = store._path("f", "1")
    paths = {
        "unlisted": f"{base}/ds=2013-01-01/part-00000-{seconds_old:.0f}dead.parquet",
        "temp manifest": f"{base}/ds=2013-01-01/_manifest.json.tmp-{seconds_old:.0f}dead",
        "uncommitted day": f"{base}/ds=2013-01-05/part-00000-{seconds_old:.0f}dead.parquet",
    }
    if store._local:
        paths["legacy temp folder"] = f"{base}/_tmp-ds=2013-01-01-{int(seconds_old):x}abc/part-00000.parquet"
    for path in paths.values():
        if store._local:
            os.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        store.fs.pipe_file(path, b"half a file")
        age(store, path, seconds_old)
    if store._local:
        legacy = paths["legacy temp folder"].rsplit("/", 1)[0]
        age(store, legacy, seconds_old)
    return paths


def sibling(store: PartitionStore) -> PartitionStore:
    """Another store on the same root and filesystem: another process (tomorrow's task, another worker)."""
    return PartitionStore(store.root, fs=store.fs, grace=store.grace)


def test_leftovers_go_with_the_next_write_once_older_than_the_grace_period(any_store: PartitionStore) -> None:
    store = any_store
    store.write("f", "1", D1, frame(3))
    fresh = plant_leftovers(store, 60)  # a concurrent writer's, a minute old
    stale = plant_leftovers(store, 2 * HOUR)
    assert store.days("f", "1") == [D1]  # uncommitted files are invisible
    store = sibling(store)  # (this store listed the version a moment ago; see the next test)
    store.write("f", "1", D2, frame(2))  # another day of the same dataset version
    assert all(store.fs.exists(p) for p in fresh.values())
    assert not any(store.fs.exists(p) for p in stale.values()), [p for p in stale.values() if store.fs.exists(p)]
    assert store.read("f", "1", D1)["id"].tolist() == [0, 1, 2]
    assert store.days("f", "1") == [D1, D2]

    report = store.verify(fix=True)  # the default grace: the fresh ones stay, and are reported
    assert report.ok and all(store.fs.exists(p) for p in fresh.values())
    listed = {name for c in report.partitions for name in c.leftovers}
    assert {p.rsplit("/", 1)[-1] for k, p in fresh.items() if k != "legacy temp folder"} <= listed
    assert store.verify(fix=True, grace=dt.timedelta(seconds=30)).ok
    assert not any(store.fs.exists(p) for p in fresh.values())
    assert names_in(store, store._path("f", "1", D1)) == sorted([MANIFEST, *store.manifest("f", "1", D1).files])
    if store._local:
        assert sorted(p.name for p in Path(store._path("f", "1")).iterdir()) == ["ds=2013-01-01", "ds=2013-01-02"]
        Path(store._path("f", "1", D3)).mkdir()  # an empty day folder is nothing to report
        assert [c.ds for c in store.verify().partitions] == ["2013-01-01", "2013-01-02"]


def test_a_store_lists_a_version_for_leftovers_again_only_when_one_can_be_old_enough(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grace = 1.5
    store = PartitionStore(tmp_path.as_uri(), grace=dt.timedelta(seconds=grace))
    listings: list[str] = []
    listing = store._listing
    monkeypatch.setattr(store, "_listing", lambda under: (listings.append(under), listing(under))[1])
    store.write("f", "1", D1, frame(1))
    killed = Path(store._path("f", "1", D3)) / "part-00000-killed.parquet"  # a writer killed just now
    killed.parent.mkdir(parents=True)
    killed.write_bytes(b"half a file")
    written = time.time()
    for day in (D2, D1):  # nothing can be old enough before the grace period has passed: no listing
        store.write("f", "1", day, frame(2))
    assert len(listings) == 1 and killed.exists()
    time.sleep(max(0.0, written + grace + 0.1 - time.time()))
    store.write("f", "1", D2, frame(3))  # now it can be: listed, and gone
    assert len(listings) == 2 and not killed.exists()
    store.write("g", "1", D1, frame(1))  # another dataset version is listed on its own first write
    assert len(listings) == 3
    assert [store.read("f", "1", d)["id"].tolist() for d in (D1, D2)] == [[0, 1], [0, 1, 2]]


def test_the_grace_period_is_the_stores(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path.as_uri(), grace=dt.timedelta(minutes=5))
    store.write("f", "1", D1, frame(1))
    stale = plant_leftovers(store, 10 * 60)
    store = sibling(store)
    store.write("f", "1", D1, frame(2))
    assert not any(Path(p).exists() for p in stale.values())
    other = plant_leftovers(store, 10 * 60)
    store.write("g", "1", D1, frame(2))  # another dataset: its write does not look here
    assert all(Path(p).exists() for p in other.values())


def test_a_day_lost_between_the_two_renames_of_an_earlier_release_comes_back(tmp_path: Path) -> None:
    store = PartitionStore((tmp_path / "root").as_uri())
    folder = legacy_day(store, "f", D2, frame(6))
    store.write("f", "1", D1, frame(1))
    base = Path(store._path("f", "1"))
    lost = base / "_tmp-ds=2013-01-02-0123456789ab-old"  # the committed day, moved aside...
    os.rename(folder, lost)
    written = base / "_tmp-ds=2013-01-02-0123456789ab"  # ...and the new one never moved in: then the kill
    written.mkdir()
    (written / PART).write_bytes(b"the new day")
    assert store.days("f", "1") == [D1]
    report = store.verify()
    assert not report.ok
    problem = next(p for c in report.partitions for p in c.problems)
    assert problem.ds == "2013-01-02" and "missing from the store; --fix moves it back" in problem.what
    for path in (lost, written, *lost.iterdir(), *written.iterdir()):
        age(store, str(path), 2 * HOUR)
    store = sibling(store)
    store.write("f", "1", D3, frame(1))  # a write removes the abandoned new day, never the lost one
    assert lost.exists() and not written.exists()
    fixed = store.verify(fix=True)
    assert any(a.startswith("moved back to") for c in fixed.partitions for a in c.fixed)
    assert store.days("f", "1") == [D1, D2, D3]
    assert store.read("f", "1", D2)["id"].tolist() == list(range(6))
    assert store.verify().ok and not lost.exists()


def test_temporary_side_files_of_killed_writes_go_with_verify_fix(store: PartitionStore, tmp_path: Path) -> None:
    store.write_side_file("validation", "features", "1", D1, "result.json", "{}")
    folder = tmp_path / "root" / "_validation" / "features" / "v=1" / "ds=2013-01-01"
    stale, fresh = folder / ".result.json.0123abcd.tmp", folder / ".result.json.4567cdef.tmp"
    for path in (stale, fresh):
        path.write_text("{")
    age(store, str(stale), 2 * HOUR)
    report = store.verify(fix=True)
    assert report.ok and not report.partitions
    assert len(report.side_leftovers) == 2
    assert [u.rsplit("/", 1)[-1] for u in report.side_removed] == [stale.name]
    assert not stale.exists() and fresh.exists() and (folder / "result.json").exists()


# -- frames kept in memory (keep_frames) ------------------------------------------------------------------------
def test_kept_frames_are_served_while_the_day_is_unchanged_and_read_again_once_rewritten(
        any_store: PartitionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store = any_store.keep_frames(25)
    opened: list[str] = []
    open_checked = store._open_checked
    monkeypatch.setattr(store, "_open_checked", lambda files, manifest, folder: (
        opened.append(folder.rsplit("=", 1)[-1]), open_checked(files, manifest, folder))[1])
    store.write("f", "1", D1, frame(10))
    store.write("f", "1", D2, frame(10, offset=100))
    first = store.read("f", "1", D1)
    first.loc[0, "x"] = -1.0  # a caller's change stays the caller's
    assert store.read("f", "1", D1).equals(frame(10)) and opened == ["2013-01-01"]
    assert store.read("f", "1", D1, columns=["id", "c"]).equals(frame(10)[["id", "c"]])  # from the whole day
    assert opened == ["2013-01-01"]
    store.read("f", "1", D1, verify_hash=True)  # a verifying read always reads the files
    assert opened == ["2013-01-01"] * 2
    store.write("f", "1", D1, frame(3, offset=50))  # re-written (e.g. by another process): read again
    assert store.read("f", "1", D1)["id"].tolist() == [50, 51, 52] and opened == ["2013-01-01"] * 3
    store.read("f", "1", D2)
    store.read("f", "1", D1)  # kept
    assert opened == ["2013-01-01"] * 3 + ["2013-01-02"]
    store.write("f", "1", D3, frame(20))  # 3 + 10 + 20 rows > 25: the least recently read days go
    store.read("f", "1", D3)
    store.read("f", "1", D1)  # read more recently than D2: kept
    store.read("f", "1", D2)
    assert opened[-2:] == ["2013-01-03", "2013-01-02"] and opened.count("2013-01-01") == 3
    assert PartitionStore(store.root, fs=store.fs)._frame_budget == 0  # off unless asked for
