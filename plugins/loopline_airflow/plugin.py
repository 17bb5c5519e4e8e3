"""The Airflow plugin entry: names the Loopline layer so Airflow lists it (``airflow plugins``).

Operators, sensors and triggers need no registration (DAGs import them from ``loopline_airflow``); the
plugin stays minimal so that loading plugins costs nothing.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin


class LooplinePlugin(AirflowPlugin):
    """Loopline: MLflow registry gate, GX validation and drift sensing for the continuous-training loop."""

    name = "loopline"
