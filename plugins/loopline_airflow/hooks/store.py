"""The partition store inside Airflow: an object-store root is opened through the provider's connection.

One seam for every task, operator and trigger of the Airflow layer: :func:`partition_store`. For
``s3://`` and ``gs://`` roots it asks Airflow's ``ObjectStoragePath`` for the filesystem of the root with a
connection id, so credentials, region and endpoint come from that connection exactly as for any other
Airflow object-storage user:

- ``s3://`` → the Amazon provider's ``aws_default`` (``login``/``password`` = access key id/secret, the extra
  ``endpoint_url`` for MinIO, moto or another S3-compatible server, ``region_name``, ``role_arn``…); when the
  connection does not exist the provider falls back to the AWS default credential chain (instance role,
  ``AWS_*`` variables);
- ``gs://`` → the Google provider's ``google_cloud_default`` (``key_path``, ``keyfile_dict`` or Application
  Default Credentials, ``project``).

``LOOPLINE_STORE_CONN_ID`` picks another connection. A ``file://`` root needs none. Outside Airflow the core's
:func:`loopline.steps.store_for` opens the same root with plain fsspec.

Airflow caches the filesystem per (scheme, connection) for the life of the process; the store forgets cached
listings before each read (:meth:`loopline.store.PartitionStore.refresh`), so a long-lived triggerer still sees
what workers commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from loopline.settings import Settings
    from loopline.store import PartitionStore

DEFAULT_CONN_IDS = {
    "s3": "aws_default", "s3a": "aws_default", "s3n": "aws_default",
    "gs": "google_cloud_default", "gcs": "google_cloud_default",
}
LOCAL_SCHEMES = ("", "file", "local")


def store_conn_id(root: str, configured: str = "") -> str | None:
    """The connection that opens ``root``: ``configured`` or the provider's default for its scheme.

    None for a local root, and for a scheme no provider here knows unless a connection is configured.
    """
    scheme = urlsplit(root).scheme
    if scheme in LOCAL_SCHEMES:
        return None
    return configured or DEFAULT_CONN_IDS.get(scheme)


def store_filesystem(root: str, conn_id: str) -> Any:
    """The fsspec filesystem Airflow builds for ``root`` from connection ``conn_id`` (``ObjectStoragePath``)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(root, conn_id=conn_id).fs


def _connection_exists(conn_id: str) -> bool:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return False
    return True


def partition_store(settings: Settings | None = None, *, root: str | None = None, check: bool = True
                    ) -> PartitionStore:
    """The partition store at ``root`` (default ``settings.store_root``), opened through its connection.

    With ``check`` a missing bucket, refused credentials or a missing Google connection fail at once with
    :class:`~loopline_airflow.exceptions.LooplineConfigurationError` (no retry) naming the root and the
    connection id.
    """
    import dataclasses

    from airflow.sdk.exceptions import AirflowNotFoundException
    from loopline.settings import Settings
    from loopline.steps import store_for
    from loopline.store import StoreAccessError

    from loopline_airflow.exceptions import LooplineConfigurationError

    settings = settings or Settings.from_env()
    if root:
        settings = dataclasses.replace(settings, store_root=root)
    root = settings.store_root
    conn_id = store_conn_id(root, settings.store_conn_id)
    if conn_id is None:
        return store_for(settings, check=check)
    access = f"Airflow connection {conn_id!r}"
    if urlsplit(root).scheme in ("s3", "s3a", "s3n") and not _connection_exists(conn_id):
        access += " (it does not exist: the AWS default credential chain was used)"
    try:
        fs = store_filesystem(root, conn_id)
    except AirflowNotFoundException as exc:
        raise LooplineConfigurationError(
            f"store root {root}: Airflow connection {conn_id!r} does not exist; create it or set "
            "LOOPLINE_STORE_CONN_ID to the connection that holds the credentials"
        ) from exc
    try:
        return store_for(settings, fs=fs, access=access, check=check)
    except StoreAccessError as exc:
        raise LooplineConfigurationError(str(exc)) from exc
