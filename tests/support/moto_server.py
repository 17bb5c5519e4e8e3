"""A local S3-compatible server for tests: moto in server mode on 127.0.0.1, a free port, stopped on exit.

Usage::

    with moto_s3() as s3:
        s3.create_bucket("loopline")
        env = s3.aws_env()                      # AWS_* variables for s3fs / boto3 / an mlflow server
        conn = s3.airflow_connection()          # AIRFLOW_CONN_AWS_DEFAULT value (endpoint in the extra)
        with s3.enforce_auth():                 # moto then refuses unknown access keys
            ...

The server runs in threads of the test process (``ThreadedMotoServer``), so subprocesses (an ``mlflow
server``, ``dag.test()``) reach it over loopback like any S3 endpoint. Moto accepts any credentials unless
:meth:`MotoS3.enforce_auth` is active.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ACCESS_KEY = "loopline-test-key"
SECRET_KEY = "loopline-test-secret"
REGION = "us-east-1"


@dataclass
class MotoS3:
    """A running moto server: ``endpoint`` for clients."""

    endpoint: str
    server: Any = field(repr=False)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))

    def aws_env(self) -> dict[str, str]:
        """What boto3, s3fs and MLflow read: credentials, region and (for MLflow) the endpoint."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION, "MLFLOW_S3_ENDPOINT_URL": self.endpoint}

    def airflow_connection(self, login: str = ACCESS_KEY, password: str = SECRET_KEY) -> str:
        """An Amazon provider connection as JSON (``AIRFLOW_CONN_AWS_DEFAULT``)."""
        return json.dumps({"conn_type": "aws", "login": login, "password": password,
                           "extra": {"endpoint_url": self.endpoint, "region_name": REGION}})

    def _reset_auth(self, count: str) -> None:
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

    @contextlib.contextmanager
    def enforce_auth(self) -> Iterator[None]:
        """Moto checks credentials (unknown access keys get 403) until the block exits."""
        self._reset_auth("0")
        try:
            yield
        finally:
            self._reset_auth("inf")


@contextlib.contextmanager
def moto_s3() -> Iterator[MotoS3]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoS3(endpoint=f"http://{host}:{port}", server=server)
    finally:
        server.stop()
