"""A real ``mlflow server`` for tests: SQLite backend, local artifacts, a free loopback port.

Usage::

    from tests.support.mlflow_server import mlflow_server

    with mlflow_server(tmp_path) as server:
        client = MlflowClient(server.uri)
        ...
        server.stop()     # e.g. to test "server down"; the context exit is then a no-op

or the pytest fixtures ``mlflow_server_module`` / ``mlflow_server_session`` from
``tests/integration/conftest.py``. ``artifacts_destination="s3://bucket/prefix"`` with ``env`` holding the
``AWS_*`` credentials and ``MLFLOW_S3_ENDPOINT_URL`` puts the proxied artifacts on an S3-compatible server
(see ``tests/support/moto_server.py``).

The server runs in its own process group (``start_new_session``) and the whole group (uvicorn workers
included) is killed on exit, even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from loopline_dev.stack import free_port

MLFLOW_BIN = Path(sys.executable).with_name("mlflow")
__all__ = ["MlflowServer", "free_port", "mlflow_server"]


@dataclass
class MlflowServer:
    """A running server: ``uri`` for clients, ``root`` for its files, ``log`` for its output."""

    uri: str
    port: int
    root: Path
    log: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server's process group, then kill what is left."""
        proc = self.process
        if proc is None:
            return
        self.process = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # stray workers of the group
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def mlflow_server(
    root: Path,
    *,
    port: int | None = None,
    serve_artifacts: bool = True,
    startup_timeout: float = 90.0,
    extra_args: list[str] | None = None,
    artifacts_destination: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` under ``root`` and yield it once ``/health`` answers; stop it on exit.

    Args:
        root: Folder for ``mlflow.db``, the artifacts and ``server.log``.
        port: Port on 127.0.0.1 (default: a free one).
        serve_artifacts: Proxy artifacts through the server (``mlflow-artifacts:/``, the production shape,
            stored under ``root/artifacts``); False gives clients the local ``root/artifacts`` path directly.
        startup_timeout: Seconds to wait for ``/health``.
        artifacts_destination: Where the server stores proxied artifacts (default ``root/artifacts``), e.g.
            ``s3://bucket/mlflow``.
        env: More environment for the server process (e.g. ``MLFLOW_S3_ENDPOINT_URL`` and ``AWS_*``).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    artifacts = root / "artifacts"
    artifacts.mkdir(exist_ok=True)
    port = port or free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = [
        str(MLFLOW_BIN), "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]
    if serve_artifacts:
        cmd += ["--serve-artifacts", "--artifacts-destination", artifacts_destination or artifacts.as_uri()]
    else:
        cmd += ["--no-serve-artifacts", "--default-artifact-root", artifacts.as_uri()]
    cmd += extra_args or []
    log = root / "server.log"
    server_env = {
        **os.environ,
        # No background job runner (not used by these tests) and no network fetch at import: both cost
        # seconds on a small machine.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        **(env or {}),
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root, env=server_env,
                                start_new_session=True)
    server = MlflowServer(uri=uri, port=port, root=root, log=log, process=proc)
    try:
        deadline = time.monotonic() + startup_timeout
        while not _healthy(uri):
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{server.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server not healthy after {startup_timeout}s:\n{server.log_tail()}")
            time.sleep(0.3)
        yield server
    finally:
        server.stop()
