"""DAG ids read back into project, model and step: the inverse of the naming scheme, for every step."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopline.project import DagName, load_file, model_names, parse_dag_id, project_names
from loopline.project.names import STEPS

pytestmark = pytest.mark.unit

FLIGHTS = Path(__file__).resolve().parents[3] / "include" / "projects" / "flights" / "project.yaml"


def test_every_dag_id_the_scheme_makes_reads_back() -> None:
    project = load_file(FLIGHTS)
    assert parse_dag_id(project_names(project).features_dag) == DagName("flights", None, "features")
    for model in project.models:
        for step in STEPS:
            assert parse_dag_id(model_names(project, model).dag(step)) == DagName("flights", model, step)


@pytest.mark.parametrize("dag_id", ["example_bash_operator", "flights", "flights.disruption",
                                    "flights.disruption.train", "Flights.features", "flights.features.extra",
                                    "flights.disruption.score.x", "loopline.project_errors", ""])
def test_other_dag_ids_are_not_loopline_dags(dag_id: str) -> None:
    assert parse_dag_id(dag_id) is None


def test_a_model_named_like_a_step_is_still_read_by_position() -> None:
    assert parse_dag_id("shop.features.score") == DagName("shop", "features", "score")
    assert parse_dag_id("shop_2.late_return.rollback") == DagName("shop_2", "late_return", "rollback")
