"""loopline_airflow.hooks.store: which connection opens a store root, and the filesystem built from it.

The ``gs://`` cases build the filesystem from the Google provider's connection (key file path, ``keyfile_dict``
or Application Default Credentials) with every socket connect refused: construction makes no network call.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from loopline.settings import Settings, SettingsError
from loopline.steps import store_for
from loopline_airflow.exceptions import LooplineConfigurationError
from loopline_airflow.hooks.store import partition_store, store_conn_id

pytestmark = pytest.mark.unit
PROJECT = "loopline-test"
EMAIL = f"loopline@{PROJECT}.iam.gserviceaccount.com"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"unexpected network call to {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture
def fresh_airflow_fs_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.io import store as io_store

    monkeypatch.setattr(io_store, "_STORE_CACHE", {})
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)


@pytest.fixture(scope="module")
def service_account(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A service-account key file with a freshly generated RSA key (never valid at Google)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": PROJECT, "private_key_id": "k1", "private_key": pem,
            "client_email": EMAIL, "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}
    path = tmp_path_factory.mktemp("gcp") / "service-account.json"
    path.write_text(json.dumps(info))
    return path, info


def test_connection_by_scheme_and_setting() -> None:
    assert store_conn_id("s3://b/p") == "aws_default"
    assert store_conn_id("gs://b/p") == "google_cloud_default"
    assert store_conn_id("s3://b/p", "minio") == "minio"
    assert store_conn_id("file:///tmp/store", "minio") is None
    assert store_conn_id("/tmp/store") is None
    assert store_conn_id("az://c/p") is None


def test_local_root_needs_no_connection(tmp_path: Path) -> None:
    store = partition_store(Settings(home=tmp_path))
    assert store.root == (tmp_path / "store").as_uri()
    assert store.access == "the local filesystem"


@pytest.mark.parametrize("how", ["key_path", "keyfile_dict", "adc"])
def test_gcs_store_is_built_from_the_google_connection(
    how: str, service_account: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
    fresh_airflow_fs_cache: None, no_network: None,
) -> None:
    import gcsfs

    path, info = service_account
    extra: dict[str, Any] = {"project": PROJECT}
    if how == "key_path":
        extra["key_path"] = str(path)
    elif how == "keyfile_dict":
        extra["keyfile_dict"] = json.dumps(info)
    else:  # Application Default Credentials: the connection names no key, the environment does
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("AIRFLOW_CONN_GOOGLE_CLOUD_DEFAULT",
                       json.dumps({"conn_type": "google_cloud_platform", "extra": extra}))

    store = partition_store(Settings(home=tmp_path, store_root="gs://loopline-bucket/features-store"),
                            check=False)
    assert isinstance(store.fs, gcsfs.GCSFileSystem)
    assert store.fs.project == PROJECT
    assert store.fs.credentials.credentials.service_account_email == EMAIL
    assert store.access == "Airflow connection 'google_cloud_default'"
    assert store.uri("features", "1", "2013-01-02") == "gs://loopline-bucket/features-store/features/v=1/ds=2013-01-02"
    assert store._path("features", "1", "2013-01-02") == "loopline-bucket/features-store/features/v=1/ds=2013-01-02"


def test_missing_google_connection_names_the_root_and_the_connection(
    tmp_path: Path, fresh_airflow_fs_cache: None, no_network: None
) -> None:
    settings = Settings(home=tmp_path, store_root="gs://loopline-bucket/p", store_conn_id="gcp_nowhere")
    with pytest.raises(LooplineConfigurationError, match=r"gs://loopline-bucket/p: Airflow connection "
                                                         r"'gcp_nowhere' does not exist"):
        partition_store(settings)


def test_core_gcs_store_from_storage_options(service_account: tuple[Path, dict[str, str]], tmp_path: Path,
                                             no_network: None) -> None:
    import gcsfs

    path, _ = service_account
    settings = Settings(home=tmp_path, store_root="gs://loopline-bucket/p",
                        store_options=json.dumps({"project": PROJECT, "token": str(path)}))
    store = store_for(settings, check=False)
    assert isinstance(store.fs, gcsfs.GCSFileSystem)
    assert store.fs.credentials.credentials.service_account_email == EMAIL
    assert "LOOPLINE_STORE_OPTIONS" in store.access


def test_store_options_must_be_a_json_object(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LOOPLINE_STORE_OPTIONS is not JSON"):
        Settings(home=tmp_path, store_options="{endpoint_url: x}")
    with pytest.raises(SettingsError, match="LOOPLINE_STORE_OPTIONS must be a JSON object"):
        Settings.from_env({"LOOPLINE_HOME": str(tmp_path), "LOOPLINE_STORE_OPTIONS": '["x"]'})
    assert Settings(home=tmp_path, store_options='{"anon": true}').storage_options() == {"anon": True}
