"""MLflowHook: where the MLflow tracking server is, from an Airflow connection or the Loopline settings.

Credentials. MLflow's REST client takes credentials from nowhere but the process: ``get_default_host_creds``
(``mlflow/utils/credentials.py``) reads ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` / ``_TOKEN`` (or
``~/.mlflow/credentials``) on every request, and ``RestStore`` is built with exactly that function
(``mlflow/tracking/_tracking_service/utils.py``, ``_get_rest_store``); artifact repositories do the same. What
it does allow is a *request header provider* (``mlflow.tracking.request_header``): every request it sends
(``mlflow/utils/rest_utils.py``, ``http_request``) carries the headers of the providers that are in context.
The hook registers one provider that is in context only while a :meth:`MLflowHook.credentials` block runs, and
its client runs each call in such a block. So the connection's credentials reach MLflow's requests, including
the artifact downloads of a model loaded inside the block, and never ``os.environ``: a subprocess started by
the task does not inherit them.
"""

from __future__ import annotations

import base64
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from loopline.redact import mask_url

if TYPE_CHECKING:
    from loopline.promotion import Registry
    from loopline.settings import Settings
    from mlflow.tracking import MlflowClient


class MLflowHook(BaseHook):
    """Hands out an ``MlflowClient`` for the tracking server named by an Airflow connection.

    Connection (default ``mlflow_default``): either ``host`` holding the full URI
    (``http://mlflow:5000``) or ``host`` + ``port`` (+ ``schema`` as a path prefix) with the scheme in the
    extra ``{"scheme": "https"}``; the extra ``{"tracking_uri": "..."}`` wins over both. ``login`` +
    ``password`` are sent as basic auth (MLflow's ``basic-auth`` server app); ``password`` alone (or the extra
    ``token``) as a bearer token. They are sent with the requests of this hook's client and of the
    :meth:`credentials` block, and are never exported to the environment. When the connection does not exist,
    the tracking URI comes from the Loopline settings (``LOOPLINE_MLFLOW_TRACKING_URI``) and credentials, if
    any, from MLflow's own ``MLFLOW_TRACKING_*`` variables.

    Nothing is looked up or contacted when the hook is built; the first call to :meth:`get_conn` (or
    :meth:`get_tracking_uri`) reads the connection.

    :param mlflow_conn_id: Airflow connection id.
    :param retry_attempts: Attempts per registry call before giving up (transient errors only).
    :param retry_backoff_seconds: First wait between attempts (doubled each time).
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(
        self,
        mlflow_conn_id: str = default_conn_name,
        *,
        retry_attempts: int = 3,
        retry_backoff_seconds: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id
        self.retry_attempts = retry_attempts
        self.retry_backoff_seconds = retry_backoff_seconds

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"host": "Tracking URI or host", "schema": "Path prefix", "password": "Token"},
            "placeholders": {"host": "http://mlflow:5000", "extra": '{"scheme": "https"}'},
        }

    @cached_property
    def _resolved(self) -> tuple[str, dict[str, str]]:
        """(tracking URI, auth headers) from the connection, or from the settings when it is absent."""
        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            from loopline.settings import Settings

            uri = Settings.from_env().mlflow_tracking_uri
            self.log.info("Connection %s is not defined; using LOOPLINE settings' tracking URI %s",
                          self.mlflow_conn_id, mask_url(uri))
            return uri, {}
        extra = conn.extra_dejson or {}
        uri = str(extra.get("tracking_uri") or "")
        if not uri:
            host = (conn.host or "").rstrip("/")
            if not host:
                raise ValueError(
                    f"connection {self.mlflow_conn_id!r} has no host; set host to the tracking URI, "
                    "e.g. http://mlflow:5000, or the extra tracking_uri"
                )
            if "://" not in host:
                host = f"{extra.get('scheme', 'http')}://{host}"
            parts = urlsplit(host)
            if conn.port and parts.port is None:
                host = f"{parts.scheme}://{parts.netloc}:{conn.port}{parts.path}"
            uri = f"{host}/{conn.schema.strip('/')}" if conn.schema else host
        token = extra.get("token")
        if conn.login and conn.password:
            basic = base64.standard_b64encode(f"{conn.login}:{conn.password}".encode()).decode()
            return uri, {"Authorization": f"Basic {basic}"}
        if conn.password or token:
            return uri, {"Authorization": f"Bearer {token or conn.password}"}
        return uri, {}

    def get_tracking_uri(self) -> str:
        """The tracking (and registry) URI this hook talks to."""
        return self._resolved[0]

    def get_conn(self) -> MlflowClient:
        """An ``MlflowClient`` for the tracking server whose calls send the connection's credentials."""
        return self.client

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        uri, headers = self._resolved
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        return cast("MlflowClient", _CredentialedClient(client, self)) if headers else client

    @contextmanager
    def credentials(self) -> Iterator[None]:
        """Within the block, every MLflow request of this process carries the connection's credentials: the
        hook's client, and MLflow's module functions (``mlflow.sklearn.load_model`` and its artifact downloads,
        in any thread). Nothing is written to ``os.environ``. Without credentials in the connection, a no-op."""
        _, headers = self._resolved
        if not headers:
            yield
            return
        _install_header_provider()
        with _ACTIVE_LOCK:
            _ACTIVE.append(headers)
        try:
            yield
        finally:
            with _ACTIVE_LOCK:
                _ACTIVE.remove(headers)

    def registry(self, model_name: str) -> Registry:
        """The registered model ``model_name`` with every registry call retried on transient errors."""
        from loopline.promotion import Registry

        return Registry(self.client, model_name, attempts=self.retry_attempts,
                        backoff_seconds=self.retry_backoff_seconds)

    def settings(self, **overrides: Any) -> Settings:
        """Loopline settings whose tracking URI is this hook's (for loading models)."""
        from loopline.settings import Settings

        return Settings.from_env(mlflow_tracking_uri=self.get_tracking_uri(), **overrides)

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.client.search_registered_models(max_results=1)
        except Exception as exc:
            return False, str(exc)
        return True, f"MLflow at {mask_url(self.get_tracking_uri())} answered"


class _CredentialedClient:
    """An ``MlflowClient`` whose every method call runs in its hook's :meth:`MLflowHook.credentials` block."""

    def __init__(self, client: MlflowClient, hook: MLflowHook) -> None:
        self._client = client
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._hook.credentials():
                return attr(*args, **kwargs)

        return call

    def __repr__(self) -> str:
        return f"<MlflowClient {mask_url(str(self._client.tracking_uri))} with connection credentials>"


# Headers of the credentials blocks open in this process (innermost last). Process-wide rather than a
# ContextVar on purpose: MLflow downloads artifacts in a thread pool, whose threads would not see a ContextVar.
_ACTIVE: list[dict[str, str]] = []
_ACTIVE_LOCK = threading.Lock()


class _ConnectionHeaderProvider:
    """MLflow ``RequestHeaderProvider``: the innermost open credentials block's headers, only while one is open."""

    def in_context(self) -> bool:
        return bool(_ACTIVE)

    def request_headers(self) -> dict[str, str]:
        with _ACTIVE_LOCK:
            return dict(_ACTIVE[-1]) if _ACTIVE else {}


@functools.cache
def _install_header_provider() -> None:
    # MLflow's public way is an ``mlflow.request_header_provider`` entry point, which would import this module
    # into every process that imports MLflow; registering on first use keeps the provider to the processes
    # that use the hook. Registered once (a second copy would send each header twice, joined).
    from mlflow.tracking.request_header.registry import _request_header_provider_registry as registry

    if not any(isinstance(p, _ConnectionHeaderProvider) for p in registry):
        registry.register(_ConnectionHeaderProvider)
