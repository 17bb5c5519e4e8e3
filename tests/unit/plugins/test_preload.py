"""loopline_airflow.preload: what the process that forks task processes builds once."""

from __future__ import annotations

import pytest
from loopline_airflow import preload

pytestmark = pytest.mark.unit


def test_skops_and_validation_are_preloaded() -> None:
    # skops.io computes its trusted-type lists at import: 8-18 s in a task process with Airflow loaded.
    assert "skops.io" in preload.MODULES and "loopline.validation" in preload.MODULES


def test_warmers_run_and_a_failing_one_does_not_stop_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("no GX here")

    monkeypatch.setattr(preload, "MODULES", ("json", "no_such_module_loopline"))
    monkeypatch.setattr(preload, "WARMERS", (broken, lambda: calls.append("ok")))
    preload.preload()
    assert calls == ["broken", "ok"]


def test_python_sources_are_warmed_through_their_own_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flights project's ``nyc.warm`` runs once, in the module object the tasks' ``resolve`` will find."""
    import sys

    from loopline.project import load_project
    from loopline.project.loader import resolve

    module = sys.modules[resolve(load_project("flights"), "sources.flights.function").__module__]
    calls: list[int] = []
    monkeypatch.setattr(module, "warm", lambda: calls.append(1))
    preload._warm_project_sources()
    assert calls == [1]  # two python sources in the one module: warmed once


def test_each_projects_generated_features_suite_is_warmed(monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline import validation
    from loopline.project import load_project
    from loopline.steps import features_suite

    warmed: list[tuple] = []
    monkeypatch.setattr(validation, "warm", lambda suites=(): warmed.append(tuple(suites)))
    preload._warm_validation()
    assert len(warmed) == 1 and features_suite(load_project("flights")) in warmed[0]


def test_mlflow_registries_are_built_in_the_parent() -> None:
    # Each would otherwise scan every installed distribution's entry points again in every task process.
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.utils import requirements_utils

    preload._warm_mlflow()
    assert registry_utils._model_registry_store_registry is not None
    assert requirements_utils._PACKAGES_TO_MODULES
