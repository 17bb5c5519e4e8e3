"""One naming scheme, derived from the project name P and the model name M.

Everything Loopline creates for a project is named here and nowhere else, so two projects never collide and
the docs, the DAGs and the store agree:

=====================  ==========================================
DAG ids                ``P.features``, ``P.M.score``, ``P.M.drift``, ``P.M.retrain``, ``P.M.rollback``
                       (read back by :func:`parse_dag_id`)
assets                 ``loopline.P.features``, ``loopline.P.M.predictions``, ``loopline.P.M.drift_reports``,
                       ``loopline.P.M.drift``
store datasets         ``P/raw/<source>``, ``P/features`` (under ``v=<features.version>``),
                       ``P/M/predictions``, ``P/M/drift``
MLflow experiment      ``loopline/P``
registered model       ``P.M`` (or the model's ``registered_model_name``)
tags                   ``loopline``, ``project:P``, ``model:M``
=====================  ==========================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from loopline.project.spec import NAME_PATTERN, Project

STEPS = ("score", "drift", "retrain", "rollback")
FEATURES_STEP = "features"
_NAME = NAME_PATTERN.strip("^$")
_DAG_ID_RE = re.compile(rf"^(?P<project>{_NAME})\.(?:(?P<features>{FEATURES_STEP})|(?P<model>{_NAME})\."
                        rf"(?P<step>{'|'.join(STEPS)}))$")


@dataclass(frozen=True)
class ProjectNames:
    """Names of a project's own things (its features DAG, datasets, experiment)."""

    project: str

    @property
    def features_dag(self) -> str:
        return f"{self.project}.features"

    @property
    def features_dataset(self) -> str:
        return f"{self.project}/features"

    @property
    def features_asset(self) -> str:
        return f"loopline.{self.project}.features"

    @property
    def experiment(self) -> str:
        return f"loopline/{self.project}"

    @property
    def tags(self) -> list[str]:
        return ["loopline", f"project:{self.project}"]

    def raw_dataset(self, source: str) -> str:
        return f"{self.project}/raw/{source}"


@dataclass(frozen=True)
class ModelNames:
    """Names of one model's things (its DAGs, datasets, assets, registered model)."""

    project: str
    model: str
    registered_model: str

    def dag(self, step: str) -> str:
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; one of {STEPS}")
        return f"{self.project}.{self.model}.{step}"

    @property
    def predictions_dataset(self) -> str:
        return f"{self.project}/{self.model}/predictions"

    @property
    def drift_dataset(self) -> str:
        return f"{self.project}/{self.model}/drift"

    @property
    def predictions_asset(self) -> str:
        return f"loopline.{self.project}.{self.model}.predictions"

    @property
    def drift_reports_asset(self) -> str:
        return f"loopline.{self.project}.{self.model}.drift_reports"

    @property
    def drift_asset(self) -> str:
        return f"loopline.{self.project}.{self.model}.drift"

    @property
    def tags(self) -> list[str]:
        return ["loopline", f"project:{self.project}", f"model:{self.model}"]


def project_names(project: Project) -> ProjectNames:
    return ProjectNames(project.project)


def model_names(project: Project, model: str) -> ModelNames:
    spec = project.models[model]
    return ModelNames(project.project, model, spec.registered_model_name or f"{project.project}.{model}")


@dataclass(frozen=True)
class DagName:
    """What a Loopline DAG id says: its project, its model (None for the features DAG) and its step."""

    project: str
    model: str | None
    step: str


def parse_dag_id(dag_id: str) -> DagName | None:
    """The project, model and step a DAG id of this scheme names, or None for any other DAG id.

    Project and model names match ``NAME_PATTERN`` (no dot), so ``P.features`` and ``P.M.<step>`` read back
    without ambiguity; this is the inverse of :attr:`ProjectNames.features_dag` and :meth:`ModelNames.dag`.
    """
    match = _DAG_ID_RE.match(dag_id)
    if match is None:
        return None
    if match["features"]:
        return DagName(match["project"], None, FEATURES_STEP)
    return DagName(match["project"], match["model"], match["step"])
