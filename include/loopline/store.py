"""The partitioned store: one Parquet partition per dataset, feature-set version and day.

Layout: ``<root>/<dataset>/v=<version>/ds=YYYY-MM-DD/part-00000.parquet`` plus ``_manifest.json``.
The root is a URI handled by fsspec (``file://`` by default; ``s3://`` and ``gs://`` with their fsspec
packages), the same filesystems Airflow's ``ObjectStoragePath`` wraps.

Writes are transactions. Data is written under a temporary name beside the partition and moved into
place; the manifest is written last and is the commit marker: a partition without a manifest does not
exist for readers. Re-writing a day replaces it (never appends). On a local filesystem the swap is a
directory rename, so a killed writer leaves the previous partition, or none, never half of one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import fsspec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

MANIFEST = "_manifest.json"
PART = "part-00000.parquet"
_DS_RE = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")


class PartitionNotFoundError(FileNotFoundError):
    """The partition asked for has not been written (or its write never committed)."""


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

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        self.root = root.rstrip("/")
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root, **(storage_options or {}))
        self._local = "file" in _protocols(self.fs)

    # -- addressing -------------------------------------------------------------------------------------
    def _path(self, dataset: str, version: str, ds: str | dt.date | None = None) -> str:
        base = f"{self._root_path}/{dataset}/v={version}"
        return base if ds is None else f"{base}/ds={as_day(ds).isoformat()}"

    def uri(self, dataset: str, version: str, ds: str | dt.date) -> str:
        """The URI of a partition folder (what goes into XCom and asset events)."""
        return f"{self.root}/{dataset}/v={version}/ds={as_day(ds).isoformat()}"

    # -- reading ----------------------------------------------------------------------------------------
    def exists(self, dataset: str, version: str, ds: str | dt.date) -> bool:
        return bool(self.fs.exists(f"{self._path(dataset, version, ds)}/{MANIFEST}"))

    def manifest(self, dataset: str, version: str, ds: str | dt.date) -> Manifest:
        path = f"{self._path(dataset, version, ds)}/{MANIFEST}"
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
        if not self.fs.exists(base):
            return []
        days = []
        for entry in self.fs.ls(base, detail=False):
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            m = _DS_RE.match(name)
            if m and self.fs.exists(f"{base}/{name}/{MANIFEST}"):
                days.append(dt.date.fromisoformat(m.group(1)))
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
        tmp = f"{self._path(dataset, version)}/_tmp-ds={day.isoformat()}-{token}"
        self.fs.makedirs(tmp, exist_ok=True)
        hasher = ContentHasher()
        rows = 0
        writer: pq.ParquetWriter | None = None
        schema: pa.Schema | None = None
        try:
            with self.fs.open(f"{tmp}/{PART}", "wb") as fh:
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
                files=[PART],
                written_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                extra=extra or {},
            )
            self._commit(tmp, final, manifest)
        except BaseException:
            self.fs.rm(tmp, recursive=True)
            raise
        return manifest

    def _commit(self, tmp: str, final: str, manifest: Manifest) -> None:
        with self.fs.open(f"{tmp}/{MANIFEST}", "w") as fh:
            fh.write(manifest.to_json())
        if self._local:
            # A directory rename is atomic on a local filesystem: swap the old partition out, the new one in.
            old = None
            if self.fs.exists(final):
                old = f"{tmp}-old"
                self.fs.mv(final, old, recursive=True)
            self.fs.mv(tmp, final, recursive=True)
            if old is not None:
                self.fs.rm(old, recursive=True)
            return
        # Object stores have no directory rename: retract the old manifest first (readers then see no
        # partition), move the data files, and publish the new manifest last as the commit marker.
        if self.fs.exists(f"{final}/{MANIFEST}"):
            self.fs.rm(f"{final}/{MANIFEST}")
        for name in manifest.files:
            self.fs.mv(f"{tmp}/{name}", f"{final}/{name}")
        self.fs.mv(f"{tmp}/{MANIFEST}", f"{final}/{MANIFEST}")
        self.fs.rm(tmp, recursive=True)

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
        self.fs.makedirs(folder, exist_ok=True)
        payload = data.encode() if isinstance(data, str) else data
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with self.fs.open(tmp, "wb") as fh:
            fh.write(payload)
        self.fs.mv(tmp, f"{folder}/{name}")
        return f"{self.side_path(kind, dataset, version, ds)}/{name}"

    def read_side_file(self, kind: str, dataset: str, version: str, ds: str | dt.date, name: str) -> bytes:
        folder = f"{self._root_path}/_{kind}/{dataset}/v={version}/ds={as_day(ds).isoformat()}"
        with self.fs.open(f"{folder}/{name}", "rb") as fh:
            data: bytes = fh.read()
            return data


def _protocols(fs: Any) -> set[str]:
    proto = fs.protocol
    return set(proto) if isinstance(proto, tuple | list) else {proto}
