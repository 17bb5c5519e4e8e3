"""Every Loopline model project, rendered into its DAGs (see ``loopline_airflow.factory``).

Projects are found in ``include/projects/`` and in every folder of ``LOOPLINE_PROJECTS_PATH``. Parsing reads the
project files only; a broken project file shows as this file's import error, naming the file and the key.
"""

from __future__ import annotations

from airflow.sdk import get_parsing_context
from loopline_airflow.factory import render_projects

# A task process parses this file only to find its own DAG: render just that one (Airflow's parsing context).
globals().update(render_projects(only=get_parsing_context().dag_id))
