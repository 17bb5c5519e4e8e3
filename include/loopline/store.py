"""The partitioned store: one Parquet partition per dataset, feature-set version and day.

Layout: ``<root>/<dataset>/v=<version>/ds=YYYY-MM-DD/part-00000.parquet`` plus ``_manifest.json``.
The root is a URI handled by fsspec (``file://`` by default; ``s3://`` and ``gs://`` with their fsspec
packages), the same filesystems Airflow's ``ObjectStoragePath`` wraps.

Writes are transactions. The manifest is written last and is the commit marker: a partition without a
manifest does not exist for readers, and readers read only the files its manifest lists. Re-writing a day
replaces it (never appends).

- On a local filesystem data and manifest are written in a temporary folder beside the partition and the
  folder is renamed into place (an atomic directory rename), so a killed writer leaves the previous
  partition, or none, never half of one.
- Object stores (S3, GCS) have no rename: a "move" is a copy and a delete, object by object. There the data
  file gets a name of its own per write (``part-00000-<token>.parquet``) and is uploaded straight into the
  partition folder, where no reader looks at it until the manifest lists it; the manifest is then written
  with a single PUT, which replaces the previous manifest atomically (S3 and GCS give strong read-after-write
  consistency), and only then are the previous write's data files deleted. A killed writer leaves the
  previous partition intact (or no partition) plus, at worst, an unlisted data file that readers never see.
  Missing buckets are never created: a store root whose bucket does not exist is an error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)
MANIFEST = "_manifest.json"
PART = "part-00000.parquet"
_DS_RE = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")


class PartitionNotFoundError(FileNotFoundError):
    """The partition asked for has not been written (or its write never committed)."""


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
        return cls(**json.loads(text))


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


class PartitionStore:
    """Read and write day partitions under a root URI."""

    def __init__(
        self,
        root: str,
        storage_options: dict[str, Any] | None = None,
        *,
        fs: Any = None,
        access: str = "",
    ) -> None:
        """Open the store at ``root``.

        Args:
            root: URI of the store root (``file://``, ``s3://bucket/prefix``, ``gs://bucket/prefix``).
            storage_options: fsspec options for the root's filesystem (ignored when ``fs`` is given).
            fs: A ready filesystem for the root, e.g. the one Airflow builds from a connection.
            access: Where the credentials come from, for error messages (e.g. ``Airflow connection
                'aws_default'``).
        """
        self.root = root.rstrip("/")
        if fs is not None:
            self.fs, self._root_path = fs, fs._strip_protocol(self.root).rstrip("/")
        else:
            self.fs, self._root_path = fsspec.core.url_to_fs(self.root, **(storage_options or {}))
        self._local = "file" in _protocols(self.fs)
        self.access = access or ("the local filesystem" if self._local else
                                 "fsspec storage options (LOOPLINE_STORE_OPTIONS) and the environment")

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
        base = f"{self._root_path}/{dataset}/v={version}"
        return base if ds is None else f"{base}/ds={as_day(ds).isoformat()}"

    def uri(self, dataset: str, version: str, ds: str | dt.date) -> str:
        """The URI of a partition folder (what goes into XCom and asset events)."""
        return f"{self.root}/{dataset}/v={version}/ds={as_day(ds).isoformat()}"

    # -- reading ----------------------------------------------------------------------------------------
    def exists(self, dataset: str, version: str, ds: str | dt.date) -> bool:
        self.refresh()
        return bool(self.fs.exists(f"{self._path(dataset, version, ds)}/{MANIFEST}"))

    def manifest(self, dataset: str, version: str, ds: str | dt.date) -> Manifest:
        path = f"{self._path(dataset, version, ds)}/{MANIFEST}"
        self.refresh()
        try:
            with self.fs.open(path, "r") as fh:
                return Manifest.from_json(fh.read())
        except FileNotFoundError as exc:
            raise PartitionNotFoundError(
                f"partition {self.uri(dataset, version, ds)} does not exist (no {MANIFEST}); "
                "build that day first"
            ) from exc

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

    def read(
        self, dataset: str, version: str, ds: str | dt.date, columns: list[str] | None = None
    ) -> pd.DataFrame:
        import pyarrow.parquet as pq

        manifest = self.manifest(dataset, version, ds)
        base = self._path(dataset, version, ds)
        frames = []
        for name in manifest.files:
            with self.fs.open(f"{base}/{name}", "rb") as fh:
                frames.append(pq.read_table(fh, columns=columns))
        import pyarrow as pa

        return pa.concat_tables(frames).to_pandas()

    def read_range(
        self,
        dataset: str,
        version: str,
        start: str | dt.date,
        end: str | dt.date,
        columns: list[str] | None = None,
    ) -> pd.DataFrame:
        """Concatenate the committed partitions with ``start <= ds <= end``; missing days are skipped."""
        import pandas as pd

        lo, hi = as_day(start), as_day(end)
        frames = [self.read(dataset, version, d, columns) for d in self.days(dataset, version) if lo <= d <= hi]
        if not frames:
            raise PartitionNotFoundError(
                f"no partitions of {self.root}/{dataset}/v={version} between {lo} and {hi}"
            )
        return pd.concat(frames, ignore_index=True)

    def iter_batches(
        self, dataset: str, version: str, ds: str | dt.date, batch_rows: int, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Stream a partition as record batches of at most ``batch_rows`` rows (bounded memory)."""
        import pyarrow.parquet as pq

        manifest = self.manifest(dataset, version, ds)
        base = self._path(dataset, version, ds)
        for name in manifest.files:
            with self.fs.open(f"{base}/{name}", "rb") as fh:
                yield from pq.ParquetFile(fh).iter_batches(batch_size=batch_rows, columns=columns)

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

        Only one batch is held in memory. If the iterable raises, nothing of this write is left behind and
        the previous version of the partition, if any, stays in place.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        day = as_day(ds)
        final = self._path(dataset, version, day)
        token = uuid.uuid4().hex[:12]
        if self._local:
            folder, part = f"{self._path(dataset, version)}/_tmp-ds={day.isoformat()}-{token}", PART
            self.fs.makedirs(folder, exist_ok=True)
        else:  # straight into the partition under a name of its own; invisible until the manifest lists it
            folder, part = final, f"{PART.removesuffix('.parquet')}-{token}.parquet"
        hasher = ContentHasher()
        rows = 0
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        try:
            with self.fs.open(f"{folder}/{part}", "wb") as fh:
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
                if writer is None:
                    raise ValueError(f"nothing to write for {self.uri(dataset, version, day)}: no batches")
            assert schema is not None
            manifest = Manifest(
                dataset=dataset,
                version=version,
                ds=day.isoformat(),
                rows=rows,
                schema=[{"name": f.name, "type": str(f.type)} for f in schema],
                content_hash=hasher.hexdigest(),
                files=[part],
                written_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                extra=extra or {},
            )
            if self._local:
                self._commit_local(folder, final, manifest)
                return manifest
            stale = self._commit_object_store(final, manifest)
        except BaseException:
            if self._local:
                self.fs.rm(folder, recursive=True)
            else:
                with contextlib.suppress(Exception):  # best effort: an unlisted file is invisible anyway
                    self.fs.rm(f"{folder}/{part}")
            raise
        # Committed: the previous write's data files are garbage now. Failing to delete one leaves an unlisted,
        # invisible object; failing the task for it would only make a retry write the same day again.
        for name in stale:
            try:
                self.fs.rm(f"{final}/{name}")
            except FileNotFoundError:
                pass
            except Exception as exc:
                log.warning("%s committed; could not delete its previous data file %s: %s",
                            self.uri(dataset, version, day), name, exc)
        return manifest

    def _commit_local(self, tmp: str, final: str, manifest: Manifest) -> None:
        with self.fs.open(f"{tmp}/{MANIFEST}", "w") as fh:
            fh.write(manifest.to_json())
        # A directory rename is atomic on a local filesystem: swap the old partition out, the new one in.
        old = None
        if self.fs.exists(final):
            old = f"{tmp}-old"
            self.fs.mv(final, old, recursive=True)
        self.fs.mv(tmp, final, recursive=True)
        if old is not None:
            self.fs.rm(old, recursive=True)

    def _commit_object_store(self, final: str, manifest: Manifest) -> list[str]:
        """Publish the manifest; return the previous write's data files, which the caller deletes after."""
        # The manifest PUT is the commit: it replaces the previous manifest in one request, so a reader sees
        # the old partition or the new one.
        self.refresh()
        previous: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            with self.fs.open(f"{final}/{MANIFEST}", "r") as fh:
                previous = list(Manifest.from_json(fh.read()).files)
        with self.fs.open(f"{final}/{MANIFEST}", "w") as fh:
            fh.write(manifest.to_json())
        return [name for name in previous if name not in manifest.files]

    def delete(self, dataset: str, version: str, ds: str | dt.date) -> None:
        path = self._path(dataset, version, ds)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=True)

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

    def read_side_file(self, kind: str, dataset: str, version: str, ds: str | dt.date, name: str) -> bytes:
        folder = f"{self._root_path}/_{kind}/{dataset}/v={version}/ds={as_day(ds).isoformat()}"
        self.refresh()
        with self.fs.open(f"{folder}/{name}", "rb") as fh:
            data: bytes = fh.read()
            return data


def _protocols(fs: Any) -> set[str]:
    proto = fs.protocol
    return set(proto) if isinstance(proto, tuple | list) else {proto}


def missed_days(have: Iterable[dt.date], done: Iterable[dt.date], newest: dt.date,
                lookback_days: int) -> list[dt.date]:
    """Days of ``newest - lookback_days .. newest - 1`` that are in ``have`` but not in ``done``, oldest first.

    The catch-up of an event-driven step: ``have`` the days its input exists for (features for scoring,
    predictions for drift), ``done`` the days its output exists for. A day whose asset event Airflow never
    turned into a run is taken by the next run instead of never.
    """
    first = newest - dt.timedelta(days=lookback_days)
    return sorted(set(d for d in have if first <= d < newest) - set(done))
