"""The package imports light (no heavy module at import time) and the plugin loads."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

HEAVY = ("pandas", "numpy", "pyarrow", "sklearn", "mlflow", "great_expectations", "scipy")


def test_importing_every_module_pulls_in_nothing_heavy():
    code = (
        "import sys\n"
        "import loopline_airflow.plugin, loopline_airflow.exceptions, loopline_airflow.hooks.mlflow\n"
        "import loopline_airflow.operators.registry, loopline_airflow.operators.validation\n"
        "import loopline_airflow.sensors.drift, loopline_airflow.triggers.drift\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_plugin_class():
    from airflow.plugins_manager import AirflowPlugin
    from loopline_airflow.plugin import LooplinePlugin

    assert issubclass(LooplinePlugin, AirflowPlugin) and LooplinePlugin.name == "loopline"
