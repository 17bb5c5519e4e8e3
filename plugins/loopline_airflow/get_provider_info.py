"""What Airflow's ``ProvidersManager`` learns about Loopline through the ``apache_airflow_provider`` entry point.

Airflow calls :func:`get_provider_info` in every process that lists providers or connection types, validates the
dict against ``airflow/provider_info.schema.json`` and requires ``package-name`` to be the installed
distribution's name (``loopline``). It is plain data: nothing is imported here, so discovery costs nothing; the
class paths are imported by Airflow only when it needs them (the MLflow hook when the connection form or
``airflow providers hooks`` asks for it), and a unit test imports every one of them.

The MLflow connection's form is declared here (``ui-field-behaviour``, ``conn-fields``) rather than read from
``MLflowHook.get_ui_field_behaviour``: since Airflow 3.2 the providers manager takes the declaration from the
provider info when present and warns that the hook method is deprecated. A unit test keeps the two equal.

The Airflow plugin (the Loopline page) is registered by the ``airflow.plugins`` entry point, not by a
``plugins`` key here: with both, Airflow would load the plugin twice and report the second as an import error.
"""

from __future__ import annotations

from typing import Any

PACKAGE_NAME = "loopline"
VERSION = "0.1.0"  # the version in pyproject.toml; a unit test keeps them equal
INTEGRATION = "Loopline"


def get_provider_info() -> dict[str, Any]:
    """The provider info dict (``provider_info.schema.json`` of Airflow 3.3)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": INTEGRATION,
        "description": (
            "Continuous training for Apache Airflow 3: feature backfill, retraining behind a champion/challenger "
            "gate in the MLflow registry, batch scoring, drift monitoring and the Loopline page in the UI."
        ),
        "versions": [VERSION],
        "integrations": [
            {"integration-name": INTEGRATION, "tags": ["ml"]},
        ],
        "hooks": [{"integration-name": INTEGRATION, "python-modules": ["loopline_airflow.hooks.mlflow"]}],
        "operators": [
            {
                "integration-name": INTEGRATION,
                "python-modules": ["loopline_airflow.operators.registry", "loopline_airflow.operators.validation"],
            },
        ],
        "sensors": [{"integration-name": INTEGRATION, "python-modules": ["loopline_airflow.sensors.drift"]}],
        "triggers": [{"integration-name": INTEGRATION, "python-modules": ["loopline_airflow.triggers.drift"]}],
        "extra-links": [
            "loopline_airflow.links.MLflowRunLink",
            "loopline_airflow.links.MLflowModelVersionLink",
            "loopline_airflow.links.DriftReportLink",
            "loopline_airflow.links.ValidationResultLink",
        ],
        "connection-types": [
            {
                "connection-type": "mlflow",
                "hook-class-name": "loopline_airflow.hooks.mlflow.MLflowHook",
                "hook-name": "MLflow",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"host": "Tracking URI or host", "schema": "Path prefix", "password": "Token"},
                    "placeholders": {"host": "http://mlflow:5000", "extra": '{"scheme": "https"}'},
                },
                "conn-fields": {
                    "tracking_uri": {
                        "label": "Tracking URI",
                        "description": "Full tracking URI; wins over host, port and path prefix.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "token": {
                        "label": "Bearer token",
                        "description": "Sent as a bearer token when no login is set (instead of the password).",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                },
            },
        ],
    }
