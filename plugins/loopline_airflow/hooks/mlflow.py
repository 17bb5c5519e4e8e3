"""MLflowHook: where the MLflow tracking server is, from an Airflow connection or the Loopline settings."""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

if TYPE_CHECKING:
    from loopline.promotion import Registry
    from loopline.settings import Settings
    from mlflow.tracking import MlflowClient


class MLflowHook(BaseHook):
    """Hands out an ``MlflowClient`` for the tracking server named by an Airflow connection.

    Connection (default ``mlflow_default``): either ``host`` holding the full URI
    (``http://mlflow:5000``) or ``host`` + ``port`` (+ ``schema`` as a path prefix) with the scheme in the
    extra ``{"scheme": "https"}``; the extra ``{"tracking_uri": "..."}`` wins over both. ``password`` (or the
    extra ``token``) is sent as a bearer token; ``login`` + ``password`` as basic auth. When the connection
    does not exist, the tracking URI comes from the Loopline settings (``LOOPLINE_MLFLOW_TRACKING_URI``).

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
        """(tracking URI, auth environment) from the connection, or from the settings when it is absent."""
        try:
            conn = self.get_connection(self.mlflow_conn_id)
        except AirflowNotFoundException:
            from loopline.settings import Settings

            uri = Settings.from_env().mlflow_tracking_uri
            self.log.info("Connection %s is not defined; using LOOPLINE settings' tracking URI %s",
                          self.mlflow_conn_id, uri)
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
        auth: dict[str, str] = {}
        token = extra.get("token")
        if conn.login and conn.password:
            auth = {"MLFLOW_TRACKING_USERNAME": conn.login, "MLFLOW_TRACKING_PASSWORD": conn.password}
        elif conn.password or token:
            auth = {"MLFLOW_TRACKING_TOKEN": str(token or conn.password)}
        return uri, auth

    def get_tracking_uri(self) -> str:
        """The tracking (and registry) URI this hook talks to."""
        return self._resolved[0]

    def get_conn(self) -> MlflowClient:
        """An ``MlflowClient`` for the tracking server (credentials exported for MLflow's REST client)."""
        return self.client

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        uri, auth = self._resolved
        # MLflow's REST client reads credentials from the environment of the process (the task's own).
        os.environ.update(auth)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

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
        return True, f"MLflow at {self.get_tracking_uri()} answered"
