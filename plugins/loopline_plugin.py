"""Registers Loopline's AirflowPlugin; the code lives in the ``loopline_airflow`` package (see .airflowignore)."""

from __future__ import annotations

from loopline_airflow.plugin import LooplinePlugin

__all__ = ["LooplinePlugin"]
