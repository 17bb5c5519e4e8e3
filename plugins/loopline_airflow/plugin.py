"""The Airflow plugin: the Loopline page (a FastAPI app at ``/loopline`` and a "Loopline" entry in the UI's nav).

Operators, sensors and triggers need no registration (DAGs import them from ``loopline_airflow``; the provider
info lists them). Every Airflow process loads plugins, but only the api-server mounts ``fastapi_apps``: the app,
FastAPI and Airflow's API security module (several seconds of imports) are built when the api-server first asks
for them, so loading the plugin elsewhere still costs nothing.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/loopline"


class _FastAPIApps:
    """``fastapi_apps`` built on first access (by the api-server), never when the plugin is loaded."""

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        from loopline_airflow.ui.app import fastapi_app

        return [fastapi_app()]


class LooplinePlugin(AirflowPlugin):
    """Loopline: MLflow registry gate, GX validation and drift sensing for the continuous-training loop."""

    name = "loopline"
    fastapi_apps = _FastAPIApps()
    external_views = [  # noqa: RUF012 (Airflow's own attribute, a list by contract)
        {
            "name": "Loopline",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "loopline",
        },
        # Tabs on every DAG and DAG-run page (Airflow 3.3 has no per-DAG condition for plugin tabs): the page
        # filtered to the DAG's project and model, and to the run's days; any other DAG reads "not a Loopline DAG".
        {
            "name": "Loopline",
            "href": f"{URL_PREFIX}/?dag_id={{DAG_ID}}",
            "destination": "dag",
            "url_route": "loopline_dag",
        },
        {
            "name": "Loopline",
            "href": f"{URL_PREFIX}/?dag_id={{DAG_ID}}&run_id={{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "loopline_dag_run",
        },
    ]
