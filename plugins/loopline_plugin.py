"""Registers Loopline's AirflowPlugin from the plugins folder when the installed package does not.

The code lives in the ``loopline_airflow`` package (see .airflowignore). An installed Loopline (``make install``,
the Docker image, ``pip install loopline``) registers the plugin through its ``airflow.plugins`` entry point;
exposing the class here as well would make Airflow load it twice and report the second copy as a plugin import
error ("already registered"). So the class is exposed here only for a checkout whose package is not installed.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

PLUGIN_ENTRY_POINT = "loopline_airflow.plugin:LooplinePlugin"


def _installed() -> bool:
    """Whether the installed ``loopline`` distribution registers the plugin. Only that distribution's metadata
    is read: ``entry_points()`` reads every installed distribution's (≈7% of a task process's CPU when every
    task's plugin load paid for it)."""
    try:
        eps = distribution("loopline").entry_points
    except PackageNotFoundError:
        return False
    return any(ep.group == "airflow.plugins" and ep.value == PLUGIN_ENTRY_POINT for ep in eps)


if not _installed():
    from loopline_airflow.plugin import LooplinePlugin

    __all__ = ["LooplinePlugin"]
