"""The partitioned store: one Parquet partition per dataset, feature-set version and day.

Layout: ``<root>/<dataset>/v=<version>/ds=YYYY-MM-DD/`` holding ``_manifest.json`` and the data file it lists,
``part-00000-<token>.parquet`` (a name of its own per write). Partitions written by earlier releases list
``part-00000.parquet`` and read the same way. A dataset name is one or more ``/``-separated segments of
``a-z 0-9 _ . -``, each starting with a letter or a digit (``features``, ``shop/returned/predictions``); names
starting with ``_`` or ``.`` belong to the store (``_validation/``, ``_reports/``, ``_quarantine/``, temporary
files). The root is a URI handled by fsspec (``file://`` by default; ``s3://`` and ``gs://`` with their
fsspec packages), the same filesystems Airflow's ``ObjectStoragePath`` wraps.

Writes are transactions, with one protocol for local folders and object stores (S3 and GCS cannot rename: a
"move" there is a copy and a delete, object by object):

1. The data file is written straight into the day's folder under its unique name. No reader looks at a file
   the manifest does not list.
2. The manifest is the commit, and it is replaced atomically: on a local filesystem it is written to
   ``_manifest.json.tmp-<token>``, flushed to disk and ``os.replace``-d over the previous one; on S3/GCS it is
   one PUT, which replaces an object atomically (both are strongly consistent for reads after writes). A
   reader finds the old manifest or the new one, never none.
3. Only then are the previous manifest's data files deleted (one that cannot be is logged and left unlisted).

A killed writer leaves the previous partition intact (or no partition) plus files no reader looks at. Those
leftovers (unlisted data files, temporary manifests, the ``_tmp-ds=…`` folders of the rename-based layout of
earlier releases) are deleted by the next write to the same dataset version and by
``loopline store verify --fix``, once older than the store's grace period (``grace``, 1 hour by default), so a
concurrent writer's fresh files are never touched; the grace period must exceed the longest write of one
partition. Missing buckets are never created: a store root whose bucket does not exist is an error.

Every read checks the partition against its manifest: the manifest parses (JSON with every key, the right
types, the right day), every listed file exists and is Parquet, and the files' row count and schema (from the
Parquet footer, which a read fetches anyway) are the manifest's. The content hash needs a pass over every
value, so it is checked on demand: :meth:`PartitionStore.verify` (``loopline store verify``) and
``read(..., verify_hash=True)``, which the validation steps use. A read that finds a listed file missing
reads the manifest again: if the day was re-written meanwhile (the commit deletes the previous files) it
reads the new partition, so a reader racing a re-write gets the old day or the new one.

A partition that fails a check raises :class:`CorruptPartitionError` naming the dataset, the day, the file and
what is wrong. Range reads fail on a broken day rather than skip it (the error names every broken day of the
window): a training or drift window silently short of a day would describe data it does not hold (a model
registered as trained on 28 days, trained on 27), and a retry cannot repair a file. ``loopline store verify
--fix`` moves a broken partition to ``<root>/_quarantine/<dataset>/v=…/ds=…/<time>/`` (kept for inspection), so
the day reads as never written and the next build writes it again. Days never written are still skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import fsspec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

log = logging.getLogger(__name__)
T = TypeVar("T")
MANIFEST = "_manifest.json"
PART = "part-00000.parquet"  # the data file of partitions written by earlier releases (still read)
PART_PREFIX = "part-00000-"
MANIFEST_TMP = f"{MANIFEST}.tmp-"
QUARANTINE = "_quarantine"
DEFAULT_GRACE = dt.timedelta(hours=1)
READ_ATTEMPTS = 5  # reads of one day that may each lose the race against a re-write before giving up
HASH_BATCH_ROWS = 65_536
_DS_RE = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")
_SEGMENT = r"[a-z0-9][a-z0-9_.-]*"
_DATASET_RE = re.compile(rf"^{_SEGMENT}(/{_SEGMENT})*$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][^/\\]*$")
_LEGACY_TMP_RE = re.compile(r"^_tmp-ds=(\d{4}-\d{2}-\d{2})-[0-9a-f]+(-old)?$")
_SIDE_TMP_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
_MANIFEST_KEYS: dict[str, type] = {"dataset": str, "version": str, "ds": str, "rows": int, "schema": list,
                                   "content_hash": str, "files": list, "written_at": str}


class PartitionError(Exception):
    """Something about a partition of the store (base class)."""


class PartitionNotFoundError(PartitionError, FileNotFoundError):
    """The partition asked for has not been written (or its write never committed)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a committed partition: where (dataset, version, day, file) and what."""

    dataset: str
    version: str
    ds: str
    uri: str
    file: str
    what: str

    def __str__(self) -> str:
        return f"dataset {self.dataset!r} day {self.ds} (v={self.version}): {self.uri}/{self.file}: {self.what}"


class CorruptPartitionError(PartitionError):
    """Committed partitions that do not match their manifest, or whose manifest is unreadable.

    ``problems`` lists each broken day (``dataset``, ``ds``, ``file`` are the first one's). A retry does not
    help: ``loopline store verify --fix`` quarantines the broken days, then rebuild them.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0]
        self.dataset, self.version, self.ds, self.file = first.dataset, first.version, first.ds, first.file
        days = ", ".join(sorted({p.ds for p in self.problems}))
        super().__init__(
            f"corrupt partition: {'; '.join(map(str, self.problems))}. Run `loopline store verify --dataset "
            f"{first.dataset} --fix` to quarantine the broken day(s) ({days}), then rebuild them"
        )

    def __reduce__(self) -> tuple[type[CorruptPartitionError], tuple[list[Problem]]]:
        return (type(self), (self.problems,))


class StoreAccessError(OSError):
    """The store root cannot be used (missing bucket, refused credentials); the message names the root and
    where its credentials came from."""


def as_day(ds: str | dt.date | dt.datetime) -> dt.date:
    """Normalise a day given as ``YYYY-MM-DD``, a date or a datetime to a date."""
    if isinstance(ds, dt.datetime):
        return ds.date()
    if isinstance(ds, dt.date):
        return ds
    try:
        return dt.date.fromisoformat(str(ds)[:10])
    except ValueError as exc:
        raise ValueError(f"{ds!r} is not a day; give it as YYYY-MM-DD") from exc


def check_dataset_name(dataset: str) -> str:
    """Return ``dataset`` if it is a valid dataset name, else raise ValueError saying what one looks like."""
    if not _DATASET_RE.match(dataset):
        raise ValueError(
            f"{dataset!r} is not a dataset name: use one or more '/'-separated segments of a-z, 0-9, '_', '.', "
            "'-', each starting with a letter or a digit (e.g. 'features', 'shop/returned/predictions')"
        )
    return dataset


def _check_version(version: str) -> str:
    if not _VERSION_RE.match(version):
        raise ValueError(f"{version!r} is not a version: use letters, digits, '_', '.', '-' (e.g. '1')")
    return version


@dataclass(frozen=True)
class Manifest:
    """What a committed partition holds."""

    dataset: str
    version: str
    ds: str
    rows: int
    schema: list[dict[str, str]]
    content_hash: str
    files: list[str]
    written_at: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse a manifest; a ValueError says what is wrong with it (invalid JSON, a missing key, a bad value)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"not a JSON object but a {type(data).__name__}")
        missing = [key for key in _MANIFEST_KEYS if key not in data]
        if missing:
            raise ValueError(f"missing key(s): {', '.join(missing)}")
        wrong = [f"{key} is {type(data[key]).__name__}, not {kind.__name__}" for key, kind in _MANIFEST_KEYS.items()
                 if not isinstance(data[key], kind) or isinstance(data[key], bool)]
        if wrong:
            raise ValueError(f"wrong type: {'; '.join(wrong)}")
        if data["rows"] < 0:
            raise ValueError(f"rows is {data['rows']}")
        if not data["files"] or not all(isinstance(n, str) and _FILE_RE.match(n) for n in data["files"]):
            raise ValueError(f"files must name the partition's data files, got {data['files']!r}")
        if not all(isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("type"), str)
                   for c in data["schema"]):
            raise ValueError("schema must be a list of {name, type} objects")
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise ValueError(f"extra is {type(extra).__name__}, not dict")
        return cls(**{key: data[key] for key in _MANIFEST_KEYS}, extra=extra)


class ContentHasher:
    """Hash of a table's content that does not depend on how it was split into batches.

    Each row is hashed with pandas' stable row hash; the digest covers the column names and dtypes and the
    sequence of row hashes, so the same rows in the same order give the same hash on every run.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._schema: str | None = None

    def update(self, frame: pd.DataFrame) -> None:
        import pandas as pd

        schema = json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()])
        if self._schema is None:
            self._schema = schema
            self._sha.update(schema.encode())
        elif schema != self._schema:
            raise ValueError("all batches of one partition must share a schema")
        if len(frame):
            self._sha.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def content_hash(frame: pd.DataFrame) -> str:
    """The :class:`ContentHasher` digest of one frame."""
    hasher = ContentHasher()
    hasher.update(frame)
    return hasher.hexdigest()


@dataclass
class PartitionCheck:
    """What :meth:`PartitionStore.verify` found in one day folder, and what ``fix`` did about it."""

    dataset: str
    version: str
    ds: str
    uri: str
    committed: bool
    rows: int | None = None
    problems: list[Problem] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No committed partition here is broken (leftovers of killed writes are not a fault)."""
        return not self.problems


@dataclass
class StoreReport:
    """What :meth:`PartitionStore.verify` found and did: one check per day folder (and per legacy temporary
    folder), and the temporary side files of killed side-file writes."""

    partitions: list[PartitionCheck] = field(default_factory=list)
    side_leftovers: list[str] = field(default_factory=list)
    side_removed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.partitions)


@dataclass
class _Tree:
    """The listing of one dataset version: day folder → file name → fsspec info, and legacy temp folders."""

    days: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    legacy: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class _Broken(Exception):
    """A file of the manifest being read is missing or does not match it (becomes a CorruptPartitionError)."""

    def __init__(self, file: str, what: str) -> None:
        super().__init__(f"{file}: {what}")
        self.file, self.what = file, what


@contextlib.contextmanager
def _reading(name: str) -> Iterator[None]:
    """Turn the errors of opening or decoding data file ``name`` into :class:`_Broken`."""
    import pyarrow as pa

    try:
        yield
    except FileNotFoundError as exc:
        raise _Broken(name, "listed by the manifest but missing") from exc
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise _Broken(name, f"not a readable Parquet file ({type(exc).__name__}: {exc})") from exc


class PartitionStore:
    """Read and write day partitions under a root URI."""

    def __init__(
        self,
        root: str,
        storage_options: dict[str, Any] | None = None,
        *,
        fs: Any = None,
        access: str = "",
        grace: dt.timedelta = DEFAULT_GRACE,
    ) -> None:
        """Open the store at ``root``.

        Args:
            root: URI of the store root (``file://``, ``s3://bucket/prefix``, ``gs://bucket/prefix``).
            storage_options: fsspec options for the root's filesystem (ignored when ``fs`` is given).
            fs: A ready filesystem for the root, e.g. the one Airflow builds from a connection.
            access: Where the credentials come from, for error messages (e.g. ``Airflow connection
                'aws_default'``).
            grace: Age after which a file no manifest lists (a killed writer's leftover) may be deleted; longer
                than the longest write of one partition, so a concurrent writer's files are never touched.
        """
        self.root = root.rstrip("/")
        if fs is not None:
            self.fs, self._root_path = fs, fs._strip_protocol(self.root).rstrip("/")
        else:
            self.fs, self._root_path = fsspec.core.url_to_fs(self.root, **(storage_options or {}))
        self._local = "file" in _protocols(self.fs)
        self.grace = grace
        self.access = access or ("the local filesystem" if self._local else
                                 "fsspec storage options (LOOPLINE_STORE_OPTIONS) and the environment")
        self._sweep_due: dict[tuple[str, str], float] = {}  # when _clean lists a dataset version again
        self._frames: OrderedDict[tuple[Any, ...], pd.DataFrame] = OrderedDict()
        self._frame_rows, self._frame_budget = 0, 0

    def check(self) -> PartitionStore:
        """Fail early and clearly when the root's bucket is missing or its credentials are refused.

        A local root needs nothing (its folders are created on write). Returns the store.
        """
        if self._local:
            return self
        bucket = self._root_path.split("/", 1)[0]
        try:
            try:
                self.fs.ls(self._root_path)  # what the store does anyway: list objects under the root
                return self
            except FileNotFoundError:
                pass  # an empty root, or no bucket at all: tell them apart
            try:
                bucket_found = bool(self.fs.exists(bucket))
            except PermissionError:  # allowed to list objects but not to read the bucket's metadata
                bucket_found = True
        except Exception as exc:
            if isinstance(exc, PermissionError) or "Credentials" in type(exc).__name__:
                raise StoreAccessError(
                    f"store root {self.root}: access refused with {self.access} ({exc}); check its credentials "
                    "and their permissions on the bucket"
                ) from exc
            raise
        if not bucket_found:
            raise StoreAccessError(
                f"store root {self.root}: bucket {bucket!r} does not exist (or is not visible) with "
                f"{self.access}; create the bucket or fix LOOPLINE_STORE_ROOT"
            )
        return self

    def refresh(self) -> None:
        """Forget cached listings. Object-store filesystems cache directory listings per instance, and one
        instance may live as long as its process (Airflow caches it per connection), so every read that
        lists or looks a file up starts fresh: another process may have committed since."""
        if not self._local:
            self.fs.invalidate_cache()

    # -- addressing -------------------------------------------------------------------------------------
    def _path(self, dataset: str, version: str, ds: str | dt.date | None = None) -> str:
        base = f"{self._root_path}/{check_dataset_name(dataset)}/v={_check_version(version)}"
        return base if ds is None else f"{base}/ds={as_day(ds).isoformat()}"

    def uri(self, dataset: str, version: str, ds: str | dt.date) -> str:
        """The URI of a partition folder (what goes into XCom and asset events)."""
        return f"{self.root}/{check_dataset_name(dataset)}/v={_check_version(version)}/ds={as_day(ds).isoformat()}"

    def _problem(self, dataset: str, version: str, day: dt.date, file: str, what: str) -> Problem:
        return Problem(dataset, version, day.isoformat(), self.uri(dataset, version, day), file, what)

    # -- reading ----------------------------------------------------------------------------------------
    def exists(self, dataset: str, version: str, ds: str | dt.date) -> bool:
        """Whether the day is committed (has a manifest); :meth:`read` says whether it is whole."""
        self.refresh()
        return bool(self.fs.exists(f"{self._path(dataset, version, ds)}/{MANIFEST}"))

    def _manifest_at(self, folder: str) -> Manifest:
        """The manifest in ``folder``; FileNotFoundError without one, ValueError when it does not parse."""
        # One GET: s3fs's file objects read an object with a HEAD then ranged GETs pinned to its ETag, which fail
        # (FileExpired) when a commit replaces the manifest in between.
        raw: bytes = self.fs.cat_file(f"{folder}/{MANIFEST}")
        try:
            return Manifest.from_json(raw.decode())
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 text ({exc})") from exc

    def manifest(self, dataset: str, version: str, ds: str | dt.date) -> Manifest:
        """The committed manifest of a day.

        Raises:
            PartitionNotFoundError: the day has no manifest (never written, or its write never committed).
            CorruptPartitionError: the manifest is unreadable or belongs to another day.
        """
        day = as_day(ds)
        folder = self._path(dataset, version, day)
        self.refresh()
        try:
            manifest = self._manifest_at(folder)
        except FileNotFoundError as exc:
            raise PartitionNotFoundError(
                f"partition {self.uri(dataset, version, day)} does not exist (no {MANIFEST}); build that day first"
            ) from exc
        except ValueError as exc:
            raise CorruptPartitionError([self._problem(dataset, version, day, MANIFEST, f"unreadable: {exc}")]
                                        ) from exc
        if manifest.ds != day.isoformat():
            raise CorruptPartitionError([self._problem(dataset, version, day, MANIFEST,
                                                       f"describes day {manifest.ds}, not {day.isoformat()}")])
        return manifest

    def days(self, dataset: str, version: str) -> list[dt.date]:
        """The committed days of a dataset version, oldest first."""
        base = self._path(dataset, version)
        self.refresh()
        if not self.fs.exists(base):
            return []
        # One recursive listing (one request per 1,000 keys on an object store), not a lookup per day.
        days = set()
        for entry in self.fs.find(base):
            folder, _, name = str(entry).rstrip("/").rpartition("/")
            m = _DS_RE.match(folder.rsplit("/", 1)[-1])
            if m and name == MANIFEST:
                days.add(dt.date.fromisoformat(m.group(1)))
        return sorted(days)

    def _open_checked(self, files: contextlib.ExitStack, manifest: Manifest, folder: str
                      ) -> list[tuple[str, pq.ParquetFile]]:
        """Open the manifest's data files and check their footers (row count, schema) against it."""
        import pyarrow.parquet as pq

        opened: list[tuple[str, pq.ParquetFile]] = []
        rows = 0
        for name in manifest.files:
            with _reading(name):
                parquet = pq.ParquetFile(files.enter_context(self.fs.open(f"{folder}/{name}", "rb")))
            mismatch = _schema_mismatch(manifest.schema, parquet.schema_arrow)
            if mismatch:
                raise _Broken(name, mismatch)
            rows += parquet.metadata.num_rows
            opened.append((name, parquet))
        if rows != manifest.rows:
            raise _Broken(", ".join(manifest.files), f"holds {rows} rows; the manifest says {manifest.rows}")
        return opened

    def _committed(
        self,
        dataset: str,
        version: str,
        day: dt.date,
        use: Callable[[Manifest, list[tuple[str, pq.ParquetFile]]], T],
        keep: contextlib.ExitStack | None = None,
    ) -> T:
        """``use`` the checked, open data files of the day's committed partition.

        A file that turns out missing or broken is judged against a fresh manifest: when the day was re-written
        meanwhile (the commit deletes the previous files) the new partition is read instead; when not, the day
        is broken. With ``keep`` the files stay open in it (a streamed read); otherwise they close on return.
        """
        folder = self._path(dataset, version, day)
        for _ in range(READ_ATTEMPTS):
            manifest = self.manifest(dataset, version, day)
            with contextlib.ExitStack() as files:
                try:
                    result = use(manifest, self._open_checked(files, manifest, folder))
                    if keep is not None:
                        keep.enter_context(files.pop_all())
                    return result
                except _Broken as exc:
                    broken = exc
            self._raise_unless_rewritten(dataset, version, day, manifest, broken)
        raise PartitionError(f"{self.uri(dataset, version, day)} was re-written {READ_ATTEMPTS} times while it "
                             "was being read; read it again")

    def _raise_unless_rewritten(self, dataset: str, version: str, day: dt.date, manifest: Manifest,
                                broken: _Broken) -> None:
        """Raise the day's CorruptPartitionError unless its manifest changed since ``manifest`` was read."""
        try:
            current: Manifest | None = self.manifest(dataset, version, day)
        except PartitionError:
            current = None  # deleted or broken since: the next attempt says which
        if current == manifest:
            raise CorruptPartitionError([self._problem(dataset, version, day, broken.file, broken.what)]
                                        ) from broken
        log.info("%s was re-written while being read (%s); reading the new partition",
                 self.uri(dataset, version, day), broken)

    def _check_columns(self, manifest: Manifest, columns: list[str] | None, uri: str) -> None:
        have = {c["name"] for c in manifest.schema}
        missing = [c for c in columns or [] if c not in have]
        if missing:
            raise ValueError(f"{uri} has no column(s) {', '.join(missing)}; it has {', '.join(sorted(have))}")

    def keep_frames(self, rows: int) -> PartitionStore:
        """Keep up to ``rows`` rows of the frames :meth:`read` returned in memory, most recently read first.

        A later read of the same day is served from memory when the day's manifest is still the one it was
        read under (same files, same content hash): the manifest is read every time, the data files only
        when the day was re-written. For a process that reads overlapping windows again and again
        (``loopline run``'s lanes: a 60-day training window every week, a 14-day drift window every day).
        Off (0) by default: an Airflow task reads each day once. Returns the store.
        """
        self._frame_budget = max(0, rows)
        self._trim_frames()
        return self

    def _trim_frames(self) -> None:
        while self._frames and self._frame_rows > self._frame_budget:
            _, dropped = self._frames.popitem(last=False)
            self._frame_rows -= len(dropped)

    def read(
        self,
        dataset: str,
        version: str,
        ds: str | dt.date,
        columns: list[str] | None = None,
        *,
        verify_hash: bool = False,
    ) -> pd.DataFrame:
        """Read one committed day, checked against its manifest (row count, schema; the content hash too with
        ``verify_hash``, which needs every column). With :meth:`keep_frames` an unchanged day read before comes
        from memory (a copy), except with ``verify_hash``.

        Raises:
            PartitionNotFoundError: the day was never written (or its write never committed).
            CorruptPartitionError: the partition does not match its manifest, or the manifest is unreadable.
        """
        import pyarrow as pa

        day = as_day(ds)
        if verify_hash and columns is not None:
            raise ValueError("verify_hash covers every column: read without columns")
        cached = self._frame_budget > 0 and not verify_hash
        if cached:
            manifest = self.manifest(dataset, version, day)
            base = (dataset, version, day, manifest.content_hash, tuple(manifest.files), manifest.rows)
            for kept in (None,) if columns is None else (None, tuple(columns)):
                hit = self._frames.get((*base, kept))
                if hit is None:
                    continue
                self._frames.move_to_end((*base, kept))
                if kept is None and columns is not None:  # the whole day is kept: take its columns
                    self._check_columns(manifest, columns, self.uri(dataset, version, day))
                    hit = hit[columns]
                return hit.copy()

        def use(manifest: Manifest, files: list[tuple[str, pq.ParquetFile]]) -> pd.DataFrame:
            self._check_columns(manifest, columns, self.uri(dataset, version, day))
            tables = []
            for name, parquet in files:
                with _reading(name):
                    tables.append(parquet.read(columns=columns, use_pandas_metadata=True))
            frame = (tables[0] if len(tables) == 1 else pa.concat_tables(tables)).to_pandas()
            if verify_hash:
                _check_hash(manifest, content_hash(_as_written(frame, files[0][1].schema_arrow)))
            elif cached and manifest.rows <= self._frame_budget:
                key = (dataset, version, day, manifest.content_hash, tuple(manifest.files), manifest.rows,
                       None if columns is None else tuple(columns))
                old = self._frames.pop(key, None)
                self._frame_rows += len(frame) - (0 if old is None else len(old))
                self._frames[key] = frame.copy()
                self._trim_frames()
            return frame

        return self._committed(dataset, version, day, use)

    def read_range(
        self,
        dataset: str,
        version: str,
        start: str | dt.date,
        end: str | dt.date,
        columns: list[str] | None = None,
    ) -> pd.DataFrame:
        """Concatenate the committed partitions with ``start <= ds <= end``, oldest first.

        Days never written are skipped (and logged). A broken day fails the read: the
        :class:`CorruptPartitionError` lists every broken day of the range (once one is found the others are
        only checked, not loaded). See the module docstring for why a broken day is not skipped.
        """
        import pandas as pd

        lo, hi = as_day(start), as_day(end)
        days = [d for d in self.days(dataset, version) if lo <= d <= hi]
        frames: list[pd.DataFrame] = []
        problems: list[Problem] = []
        for d in days:
            try:
                if problems:
                    self._committed(dataset, version, d, lambda m, f: None)
                else:
                    frames.append(self.read(dataset, version, d, columns))
            except CorruptPartitionError as exc:
                problems.extend(exc.problems)
            except PartitionNotFoundError:
                continue  # deleted since it was listed: like a day never written
        if problems:
            raise CorruptPartitionError(problems)
        if not frames:
            raise PartitionNotFoundError(
                f"no partitions of {self.root}/{dataset}/v={version} between {lo} and {hi}"
            )
        absent = (hi - lo).days + 1 - len(frames)
        if absent:
            log.info("%s/%s/v=%s: %d of the %d days %s..%s have no partition (never built); read the other %d",
                     self.root, dataset, version, absent, absent + len(frames), lo, hi, len(frames))
        return pd.concat(frames, ignore_index=True)

    def iter_batches(
        self, dataset: str, version: str, ds: str | dt.date, batch_rows: int, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream a partition as record batches of at most ``batch_rows`` rows (bounded memory).

        The files are opened and checked (row count, schema) before the first batch. On a local filesystem an
        open file outlives a re-write of the day; on an object store a re-write that deletes the file during
        the stream fails it with a :class:`PartitionError` (read it again).
        """
        day = as_day(ds)
        uri = self.uri(dataset, version, day)
        with contextlib.ExitStack() as keep:

            def use(manifest: Manifest, files: list[tuple[str, pq.ParquetFile]]
                    ) -> tuple[Manifest, list[tuple[str, pq.ParquetFile]]]:
                self._check_columns(manifest, columns, uri)
                return manifest, files

            manifest, files = self._committed(dataset, version, day, use, keep=keep)
            for name, parquet in files:
                try:
                    with _reading(name):
                        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)
                except _Broken as exc:
                    self._raise_unless_rewritten(dataset, version, day, manifest, exc)
                    raise PartitionError(f"{uri} was re-written while it was being streamed; read it again"
                                         ) from exc

    # -- writing ----------------------------------------------------------------------------------------
    def write(
        self,
        dataset: str,
        version: str,
        ds: str | dt.date,
        frame: pd.DataFrame,
        extra: dict[str, Any] | None = None,
    ) -> Manifest:
        """Write (or replace) one day's partition from a frame."""
        return self.write_batches(dataset, version, ds, [frame], extra=extra)

    def write_batches(
        self,
        dataset: str,
        version: str,
        ds: str | dt.date,
        batches: Iterable[pd.DataFrame],
        extra: dict[str, Any] | None = None,
    ) -> Manifest:
        """Write (or replace) one day's partition from frames produced one at a time.

        Only one batch is held in memory. If the iterable raises (or the writer is killed), the previous
        version of the partition, if any, stays in place and readable; what this write left is removed here
        or, if it was killed, by a later write or ``loopline store verify --fix`` after the grace period.
        """
        day = as_day(ds)
        folder = self._path(dataset, version, day)
        uri = self.uri(dataset, version, day)
        token = uuid.uuid4().hex[:12]
        part = f"{PART_PREFIX}{token}.parquet"
        if self._local:
            self.fs.makedirs(folder, exist_ok=True)
        try:
            rows, schema, digest = self._write_data(f"{folder}/{part}", batches, uri)
            manifest = Manifest(
                dataset=dataset,
                version=version,
                ds=day.isoformat(),
                rows=rows,
                schema=schema,
                content_hash=digest,
                files=[part],
                written_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                extra=extra or {},
            )
            previous = self._publish(folder, manifest, token, uri)
        except BaseException:
            self._abandon(folder, part, token)
            raise
        # Committed. What follows is housekeeping and never fails the write: failing the task for it would only
        # make a retry write the same day again.
        if self._local:
            try:
                _fsync(folder)  # make the rename itself durable
            except OSError as exc:
                log.warning("%s committed; could not flush its folder to disk: %s", uri, exc)
        # The previous write's data files are garbage now; one that cannot be deleted is left unlisted, invisible.
        for name in previous:
            if name in manifest.files:
                continue
            try:
                self.fs.rm(f"{folder}/{name}")
            except FileNotFoundError:
                pass
            except Exception as exc:
                log.warning("%s committed; could not delete its previous data file %s: %s", uri, name, exc)
        try:
            self._clean(dataset, version)
        except Exception as exc:  # housekeeping must not fail a committed write
            log.warning("%s committed; cleaning leftovers of killed writes failed: %s", uri, exc)
        return manifest

    def _write_data(self, path: str, batches: Iterable[pd.DataFrame], uri: str
                    ) -> tuple[int, list[dict[str, str]], str]:
        """Write the batches as one Parquet file; return its row count, schema and content hash."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        hasher = ContentHasher()
        rows = 0
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        with self.fs.open(path, "wb") as fh:
            try:
                for frame in batches:
                    table = pa.Table.from_pandas(frame, preserve_index=False)
                    if writer is None:
                        schema = table.schema
                        writer = pq.ParquetWriter(fh, schema)
                    hasher.update(frame)
                    writer.write_table(table.cast(schema) if table.schema != schema else table)
                    rows += len(frame)
            finally:
                if writer is not None:
                    writer.close()
            if writer is None or schema is None:
                raise ValueError(f"nothing to write for {uri}: no batches")
        if self._local:
            _fsync(path)  # the data must be on disk before a manifest that lists it is
        return rows, [{"name": f.name, "type": str(f.type)} for f in schema], hasher.hexdigest()

    def _publish(self, folder: str, manifest: Manifest, token: str, uri: str) -> list[str]:
        """Commit: replace the day's manifest atomically. Return the data files of the manifest it replaced."""
        self.refresh()
        try:
            previous = list(self._manifest_at(folder).files)
        except FileNotFoundError:
            previous = []
        except ValueError as exc:  # a broken day being rebuilt: its files become unlisted leftovers
            log.warning("%s: replacing an unreadable manifest (%s)", uri, exc)
            previous = []
        path, payload = f"{folder}/{MANIFEST}", manifest.to_json().encode()
        if not self._local:
            # One PUT replaces the object atomically. Not through a file object: fsspec's buffered files upload
            # what they hold when an exception leaves their ``with`` block, which could publish half a manifest.
            self.fs.pipe_file(path, payload)
            return previous
        tmp = f"{folder}/{MANIFEST_TMP}{token}"
        self.fs.pipe_file(tmp, payload)
        _fsync(tmp)
        os.replace(tmp, path)  # atomic on a local filesystem: readers open the old manifest or the new one
        return previous

    def _abandon(self, folder: str, part: str, token: str) -> None:
        """Best effort after a failed write: remove what it wrote, unless its manifest was published."""
        try:
            if self._local:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f"{folder}/{MANIFEST_TMP}{token}")
            try:
                listed = self._manifest_at(folder).files
            except FileNotFoundError:
                listed = []
            if part in listed:
                return  # the commit happened: the day is this write's
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(f"{folder}/{part}")
            if self._local:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)  # only if empty: a first write that failed leaves no day folder
        except Exception as exc:
            log.warning("could not remove what a failed write left in %s (%s); a later write or `loopline store "
                        "verify --fix` will", folder, exc)

    def delete(self, dataset: str, version: str, ds: str | dt.date) -> None:
        """Delete a day: its manifest first (readers then see no day, not a broken one), then its files."""
        path = self._path(dataset, version, ds)
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(f"{path}/{MANIFEST}")
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

    # -- checking and cleaning ----------------------------------------------------------------------------
    def verify(
        self,
        dataset: str | None = None,
        *,
        content: bool = True,
        fix: bool = False,
        grace: dt.timedelta | None = None,
    ) -> StoreReport:
        """Check every committed partition (of ``dataset``, all its versions; of the whole store without one).

        Each day's manifest is checked against its data files: readable manifest, files present and Parquet,
        row count and schema, and with ``content`` the content hash (a pass over every value, in batches).
        Files no manifest lists (leftovers of killed writes) are reported.

        With ``fix``:

        - a broken partition is moved to ``<root>/_quarantine/<dataset>/v=…/ds=…/<time>/`` (data files first,
          the manifest last), so the day reads as never written and its next build writes it whole;
        - leftovers older than the grace period (``grace``, default the store's) are deleted;
        - a committed day that a re-write of an earlier release lost (killed between its two folder renames,
          the day left in ``_tmp-ds=…-old``) is moved back, once older than the grace period.

        Fixing assumes no writer is rebuilding a day while its broken partition is being quarantined.
        """
        under = self._root_path if dataset is None else f"{self._root_path}/{check_dataset_name(dataset)}"
        trees, side_temps = self._listing(under)
        cutoff = time.time() - (self.grace if grace is None else grace).total_seconds()
        report = StoreReport()
        for (name, version), tree in sorted(trees.items()):
            if dataset is not None and name != dataset:
                continue
            for day in sorted(tree.days):
                check = self._verify_day(name, version, as_day(day), tree.days[day], content, fix, cutoff)
                if check.committed or check.leftovers:  # not an empty folder
                    report.partitions.append(check)
            report.partitions.extend(self._verify_legacy(name, version, tree, fix, cutoff))
        if dataset is None:
            for path, info in sorted(side_temps.items()):
                report.side_leftovers.append(f"{self.root}/{path.removeprefix(self._root_path + '/')}")
                if fix and _older(info, cutoff):
                    self._remove(path)
                    report.side_removed.append(report.side_leftovers[-1])
        return report

    def _verify_day(self, dataset: str, version: str, day: dt.date, files: dict[str, dict[str, Any]],
                    content: bool, fix: bool, cutoff: float) -> PartitionCheck:
        folder = self._path(dataset, version, day)
        check = PartitionCheck(dataset, version, day.isoformat(), self.uri(dataset, version, day),
                               committed=MANIFEST in files)
        listed: list[str] | None = None
        if check.committed:
            try:
                manifest = self._committed(dataset, version, day, _hash_files if content else _footers_only)
                check.rows, listed = manifest.rows, manifest.files
            except CorruptPartitionError as exc:
                check.problems = exc.problems
            except PartitionNotFoundError:
                check.committed = False  # deleted since it was listed
                files = {n: i for n, i in files.items() if n != MANIFEST}
        if check.problems:
            if fix:
                check.fixed.append(f"quarantined to {self._quarantine(dataset, version, day, files)}; rebuild the day")
            return check
        check.leftovers = self._unlisted(folder, files, listed)
        if fix:
            for name in check.leftovers:
                if _older(files[name], cutoff):
                    self._remove(f"{folder}/{name}")
                    check.fixed.append(f"removed {name}")
            if self._local and not check.committed:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        return check

    def _verify_legacy(self, dataset: str, version: str, tree: _Tree, fix: bool, cutoff: float,
                       restore: bool = True) -> list[PartitionCheck]:
        """Report (and with ``fix`` resolve) the temporary folders of the rename-based layout of earlier releases.

        With ``fix`` those older than the grace period are deleted, except a lost committed day, which is moved
        back with ``restore`` and otherwise left for ``verify --fix``.
        """
        checks = []
        base = self._path(dataset, version)
        for name, infos in sorted(tree.legacy.items()):
            match = _LEGACY_TMP_RE.match(name)
            assert match is not None
            day = as_day(match.group(1))
            check = PartitionCheck(dataset, version, day.isoformat(), f"{self.root}/{dataset}/v={version}/{name}",
                                   committed=False, leftovers=[name])
            names = {str(i["name"]).rstrip("/").rsplit("/", 1)[-1]: i for i in infos if i.get("type") != "directory"}
            lost = bool(match.group(2)) and MANIFEST in names and MANIFEST not in tree.days.get(day.isoformat(), {})
            if lost:
                check.problems.append(self._problem(
                    dataset, version, day, name,
                    "the committed day, moved here by a re-write (layout of earlier releases) killed between its two "
                    "renames, is missing from the store; --fix moves it back"))
            if fix and all(_older(i, cutoff) for i in infos):
                if not lost:
                    self._remove(f"{base}/{name}", recursive=True)
                    check.fixed.append(f"removed {name}")
                elif restore:
                    self._restore(f"{base}/{name}", self._path(dataset, version, day), names)
                    check.fixed.append(f"moved back to {self.uri(dataset, version, day)}")
            checks.append(check)
        return checks

    def _restore(self, source: str, folder: str, names: Iterable[str]) -> None:
        self.fs.makedirs(folder, exist_ok=True)
        for name in sorted(names, key=lambda n: n == MANIFEST):  # the manifest last: it commits the day
            self.fs.mv(f"{source}/{name}", f"{folder}/{name}")
        self._remove(source, recursive=True)

    def _quarantine(self, dataset: str, version: str, day: dt.date, files: Iterable[str]) -> str:
        """Move a broken partition out of the way (data files first, the manifest last); return where to."""
        folder = self._path(dataset, version, day)
        stamp = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        relative = f"{QUARANTINE}/{dataset}/v={version}/ds={day.isoformat()}/{stamp}"
        target = f"{self._root_path}/{relative}"
        if self._local:
            self.fs.makedirs(target, exist_ok=True)
        names = sorted((n for n in files if not n.startswith(MANIFEST_TMP)), key=lambda n: n == MANIFEST)
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                self.fs.mv(f"{folder}/{name}", f"{target}/{name}")
        if self._local:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        return f"{self.root}/{relative}"

    def _clean(self, dataset: str, version: str) -> list[str]:
        """Delete the leftovers of killed writes in one dataset version that are older than the grace period.

        What a write runs after its commit: one listing of the version, and a manifest read only for the days
        holding more than one data file. Broken days are left to ``verify``.

        The listing is skipped until something could have become old enough since this store's last one: a
        leftover it saw then (not yet old enough) is due ``grace`` after its modification time, and any file
        written after that listing no sooner than ``grace`` after it. So a process that writes every day of a
        year lists each version about once per grace period, not once per write (on an object store, a LIST
        of every key of the version). Leftovers in the temporary folders of earlier releases' layout that were
        seen too young wait for the next listing, at most one grace period more.
        """
        now = time.time()
        if now < self._sweep_due.get((dataset, version), 0.0):
            return []
        trees, _ = self._listing(self._path(dataset, version))
        tree = trees.get((dataset, version))
        grace = self.grace.total_seconds()
        due = now + grace
        if tree is None:
            self._sweep_due[(dataset, version)] = due
            return []
        cutoff = now - grace
        removed = []
        for day, files in tree.days.items():
            folder = f"{self._path(dataset, version)}/ds={day}"
            for name in self._unlisted(folder, files):
                if _older(files[name], cutoff):
                    self._remove(f"{folder}/{name}")
                    removed.append(f"ds={day}/{name}")
                else:  # a running writer's file, or a killed one's that is not old enough yet
                    due = min(due, (_mtime(files[name]) or now) + grace)
        self._sweep_due[(dataset, version)] = due
        for check in self._verify_legacy(dataset, version, tree, fix=True, cutoff=cutoff, restore=False):
            removed.extend(check.fixed)
        if removed:
            log.info("%s/%s/v=%s: removed %d leftover(s) of killed writes: %s", self.root, dataset, version,
                     len(removed), ", ".join(removed))
        return removed

    def _unlisted(self, folder: str, files: dict[str, dict[str, Any]], listed: list[str] | None = None
                  ) -> list[str]:
        """Names in a day folder that no manifest lists: temporary manifests and unlisted data files.

        Without ``listed`` the day's manifest is read only when the folder holds more than one data file (a
        committed day written by this store holds exactly one).
        """
        temps = sorted(n for n in files if n.startswith(MANIFEST_TMP))
        data = sorted(n for n in files if n != MANIFEST and n not in temps)
        if MANIFEST in files and listed is None:
            if len(data) <= 1:
                return temps
            try:
                listed = self._manifest_at(folder).files
            except (FileNotFoundError, ValueError):
                return temps  # gone or broken since listed: nothing is provably unlisted
        return temps + [n for n in data if n not in (listed or [])]

    def _listing(self, under: str) -> tuple[dict[tuple[str, str], _Tree], dict[str, dict[str, Any]]]:
        """One recursive listing of ``under``: each dataset version's day folders and legacy temporary folders,
        and the temporary side files (``_<kind>/…/.<name>.<token>.tmp``) of killed side-file writes."""
        self.refresh()
        try:
            listing = self.fs.find(under, withdirs=True, detail=True)
        except FileNotFoundError:
            return {}, {}
        trees: dict[tuple[str, str], _Tree] = {}
        side_temps: dict[str, dict[str, Any]] = {}
        prefix = f"{self._root_path}/"
        for path, info in listing.items():
            if not str(path).startswith(prefix):
                continue
            segments = str(path).rstrip("/").removeprefix(prefix).split("/")
            if segments[0].startswith("_") and segments[0] != QUARANTINE and _SIDE_TMP_RE.match(segments[-1]):
                side_temps[str(path)] = info
                continue
            at = next((i for i, s in enumerate(segments) if s.startswith("v=")), 0)
            dataset, version = "/".join(segments[:at]), segments[at][2:]
            if not at or len(segments) < at + 2 or not _DATASET_RE.match(dataset) or not _VERSION_RE.match(version):
                continue
            tree = trees.setdefault((dataset, version), _Tree())
            top, rest = segments[at + 1], segments[at + 2:]
            if _DS_RE.match(top):
                files = tree.days.setdefault(top[3:], {})
                if len(rest) == 1 and info.get("type") != "directory":
                    files[rest[0]] = info
            elif _LEGACY_TMP_RE.match(top):
                tree.legacy.setdefault(top, []).append(info)
        return trees, side_temps

    def _remove(self, path: str, recursive: bool = False) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path, recursive=recursive)

    # -- side files (reports beside a partition, written atomically) -------------------------------------
    def side_path(self, kind: str, dataset: str, version: str, ds: str | dt.date) -> str:
        """URI of the folder for reports about a partition (validation results, drift reports).

        Side files live in a tree of their own (``<root>/_<kind>/<dataset>/v=…/ds=…``), so a failed
        validation can leave its report without leaving anything in the partition itself.
        """
        return f"{self.root}/_{kind}/{dataset}/v={version}/ds={as_day(ds).isoformat()}"

    def write_side_file(self, kind: str, dataset: str, version: str, ds: str | dt.date, name: str,
                        data: str | bytes) -> str:
        folder = f"{self._root_path}/_{kind}/{dataset}/v={version}/ds={as_day(ds).isoformat()}"
        payload = data.encode() if isinstance(data, str) else data
        if not self._local:  # one PUT replaces an object atomically; a copy-and-delete "rename" would not
            with self.fs.open(f"{folder}/{name}", "wb") as fh:
                fh.write(payload)
            return f"{self.side_path(kind, dataset, version, ds)}/{name}"
        self.fs.makedirs(folder, exist_ok=True)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(payload)
        self.fs.mv(tmp, f"{folder}/{name}")
        return f"{self.side_path(kind, dataset, version, ds)}/{name}"

    def side_days(self, kind: str, dataset: str, version: str) -> list[dt.date]:
        """Days with a side-file folder of ``kind`` for a dataset version (e.g. a validation result), oldest
        first; one listing of the version's folder."""
        base = f"{self._root_path}/_{kind}/{dataset}/v={version}"
        self.refresh()
        try:
            entries = self.fs.ls(base, detail=False)
        except FileNotFoundError:
            return []
        days = {dt.date.fromisoformat(m.group(1)) for entry in entries
                if (m := _DS_RE.match(str(entry).rstrip("/").rsplit("/", 1)[-1]))}
        return sorted(days)

    def read_side_file(self, kind: str, dataset: str, version: str, ds: str | dt.date, name: str) -> bytes:
        folder = f"{self._root_path}/_{kind}/{dataset}/v={version}/ds={as_day(ds).isoformat()}"
        self.refresh()
        with self.fs.open(f"{folder}/{name}", "rb") as fh:
            data: bytes = fh.read()
            return data



def _footers_only(manifest: Manifest, files: list[tuple[str, pq.ParquetFile]]) -> Manifest:
    return manifest


def _hash_files(manifest: Manifest, files: list[tuple[str, pq.ParquetFile]]) -> Manifest:
    """Recompute the content hash batch by batch (bounded memory) and compare it with the manifest's."""
    hasher = ContentHasher()
    seen = False
    for name, parquet in files:
        with _reading(name):
            for batch in parquet.iter_batches(batch_size=HASH_BATCH_ROWS, use_pandas_metadata=True):
                hasher.update(_as_written(batch.to_pandas(), parquet.schema_arrow))
                seen = True
    if not seen:  # an empty partition: its hash covers the schema only
        schema = files[0][1].schema_arrow
        hasher.update(_as_written(schema.empty_table().to_pandas(), schema))
    _check_hash(manifest, hasher.hexdigest())
    return manifest


def _as_written(frame: pd.DataFrame, schema: pa.Schema) -> pd.DataFrame:
    """The frame with the dtypes its writer hashed. pandas 3 reads a column written as ``object`` strings back as
    ``str`` (same values, same row hashes, another dtype name); the file's pandas metadata says what it was."""
    columns = (schema.pandas_metadata or {}).get("columns", [])
    objects = {c["name"]: object for c in columns
               if c.get("numpy_type") == "object" and c.get("name") in frame.columns
               and str(frame[c["name"]].dtype) != "object"}
    return frame.astype(objects) if objects else frame


def _check_hash(manifest: Manifest, digest: str) -> None:
    if digest != manifest.content_hash:
        raise _Broken(", ".join(manifest.files), f"content hash {digest[:16]}… differs from the manifest's "
                                                 f"{manifest.content_hash[:16]}…")


def _normal_type(name: str) -> str:
    # Arrow reads a dictionary's large_string values back as string: the same column to a reader.
    return re.sub(r"\blarge_(string|binary|list)\b", r"\1", name)


def _schema_mismatch(declared: list[dict[str, str]], schema: pa.Schema) -> str | None:
    """What differs between the manifest's schema and a data file's (None when they agree)."""
    want = {c["name"]: _normal_type(c["type"]) for c in declared}
    have = {f.name: _normal_type(str(f.type)) for f in schema}
    if list(want.items()) == list(have.items()):
        return None
    parts = [f"{name} is {have[name]} in the data, {kind} in the manifest"
             for name, kind in want.items() if name in have and have[name] != kind]
    missing = [name for name in want if name not in have]
    unknown = [name for name in have if name not in want]
    if missing:
        parts.append(f"column(s) {', '.join(missing)} missing from the data")
    if unknown:
        parts.append(f"column(s) {', '.join(unknown)} not in the manifest")
    return f"schema differs from the manifest's: {'; '.join(parts) or 'columns in another order'}"


def _mtime(info: dict[str, Any]) -> float | None:
    """Modification time (epoch seconds) from an fsspec info dict of any filesystem, None when unknown."""
    for key in ("mtime", "LastModified", "updated", "last_modified", "modified", "created"):
        value = info.get(key)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = dt.datetime.fromisoformat(value)
        if isinstance(value, dt.datetime):
            return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp()
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _older(info: dict[str, Any], cutoff: float) -> bool:
    """Whether a listed file was last modified before ``cutoff``; a file of unknown age is never old."""
    mtime = _mtime(info)
    return mtime is not None and mtime < cutoff


def _fsync(path: str) -> None:
    """Flush a local file (or a folder, for a rename in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _protocols(fs: Any) -> set[str]:
    proto = fs.protocol
    return set(proto) if isinstance(proto, tuple | list) else {proto}
