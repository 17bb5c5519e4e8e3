"""Model projects: the typed spec of ``project.yaml``, its loader and the names derived from it.

Import from here: ``from loopline.project import Project, load_project, discover, model_names``.
"""

from __future__ import annotations

from loopline.project.loader import (
    PROJECT_FILE,
    PROJECTS_PATH_ENV,
    Found,
    ProjectError,
    discover,
    load_file,
    load_project,
    resolve,
    search_roots,
)
from loopline.project.names import DagName, ModelNames, ProjectNames, model_names, parse_dag_id, project_names
from loopline.project.spec import Column, Model, Project, Source

__all__ = [
    "PROJECTS_PATH_ENV",
    "PROJECT_FILE",
    "Column",
    "DagName",
    "Found",
    "Model",
    "ModelNames",
    "Project",
    "ProjectError",
    "ProjectNames",
    "Source",
    "discover",
    "load_file",
    "load_project",
    "model_names",
    "parse_dag_id",
    "project_names",
    "resolve",
    "search_roots",
]
