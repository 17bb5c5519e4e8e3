"""tracking.load_model loads only skops files of reviewed types; every other artifact is refused unexecuted.

One local MLflow store (SQLite + files, no server) holds a genuine version and every hostile variant of
``tests/support/hostile_models.py``; each variant would touch a marker file if it were ever deserialized.
The same variants run against a real server, through scoring and the promotion gate, in
``tests/integration/test_model_load_safety.py``.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from loopline import tracking
from loopline.settings import Settings
from loopline.tracking import UnsafeModelError
from sklearn.linear_model import LogisticRegression

from tests.support.hostile_models import Variant, hostile_variants, register_folder, sklearn_mlmodel

pytestmark = pytest.mark.unit
VARIANTS = sorted(hostile_variants(Path("/nonexistent/marker"), LogisticRegression()))


@dataclass(frozen=True)
class Store:
    """The local MLflow store: which version holds which artifact, and the marker none may create."""

    settings: Settings
    marker: Path
    versions: dict[str, str]
    variants: dict[str, Variant]
    genuine: Any


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The local store; MLflow's process-wide tracking and registry URIs (set by configure) are put back after,
    so later tests' ``MlflowClient(uri)`` do not silently talk to this SQLite registry."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_uri, registry_uri = tracking_utils._tracking_uri, registry_utils._registry_uri
    env = {var: os.environ.get(var) for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}  # set_*_uri export
    try:
        yield _make_store(tmp_path_factory.mktemp("safety"))
    finally:
        mlflow.set_tracking_uri(tracking_uri)
        registry_utils._registry_uri = registry_uri
        for var, value in env.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def _make_store(home: Path) -> Store:
    settings = Settings(home=home, model_name="safety")
    marker = home / "marker"
    rng = np.random.default_rng(3)
    X = rng.random((40, 3))
    genuine = LogisticRegression().fit(X, (X[:, 0] > 0.5).astype(int))
    variants = hostile_variants(marker, genuine)
    experiment_id = tracking.configure(settings)
    c = tracking.client(settings)
    versions = {}
    for key in ["genuine", *sorted(variants)]:
        folder = home / "folders" / key
        if key == "genuine":
            Variant(sklearn_mlmodel("skops", "model.skops"), {"model.skops": sio.dumps(genuine)}, ()).write(folder)
        else:
            variants[key].write(folder)
        versions[key] = register_folder(c, settings.model_name, experiment_id, folder)
    return Store(settings, marker, versions, variants, genuine)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    tracking.clear_model_cache()


def test_the_payloads_are_live(tmp_path: Path) -> None:
    """The test artifacts really run code when a trusting loader reads them (so a refusal means something)."""
    variants = hostile_variants(tmp_path / "m", LogisticRegression())
    pickle.loads(variants["pickle"].files["model.pkl"])  # unpickling the payload on purpose
    assert (tmp_path / "m").exists()
    (tmp_path / "m").unlink()
    data = variants["skops_custom_class"].files["model.skops"]
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    assert (tmp_path / "m").exists()


def test_genuine_skops_model_loads_by_version_and_alias(store: Store) -> None:
    c = tracking.client(store.settings)
    version = store.versions["genuine"]
    c.set_registered_model_alias(store.settings.model_name, tracking.CHAMPION, version)
    X = np.random.default_rng(4).random((5, 3))
    for uri in (f"models:/safety/{version}", "models:/safety@champion"):
        model = tracking.load_model(uri, store.settings)
        assert isinstance(model, LogisticRegression)
        np.testing.assert_allclose(model.predict_proba(X), store.genuine.predict_proba(X))


@pytest.mark.parametrize("key", VARIANTS)
def test_every_hostile_variant_is_refused_unexecuted(store: Store, key: str) -> None:
    version = store.versions[key]
    with pytest.raises(UnsafeModelError) as err:
        tracking.load_model(f"models:/safety/{version}", store.settings)
    text = str(err.value)
    assert f"registered model 'safety' version {version}" in text
    for part in store.variants[key].says:
        assert part in text, (part, text)
    assert "Nothing of this artifact was executed" in text and "alias" in text
    assert not store.marker.exists()


@pytest.mark.parametrize("key", ["pickle", "skops_custom_class"])
def test_alias_pointing_at_a_hostile_version_is_refused(store: Store, key: str) -> None:
    c = tracking.client(store.settings)
    version = store.versions[key]
    c.set_registered_model_alias(store.settings.model_name, tracking.CHAMPION, version)
    with pytest.raises(UnsafeModelError, match=rf"models:/safety@champion \(registered model 'safety' version "
                                               rf"{version}\)"):
        tracking.load_model("models:/safety@champion", store.settings)
    assert not store.marker.exists()


def test_a_refused_version_is_not_cached(store: Store) -> None:
    uri = f"models:/safety/{store.versions['pickle']}"
    for _ in range(2):
        with pytest.raises(UnsafeModelError):
            tracking.load_model(uri, store.settings)
    assert not tracking._model_cache


def test_mlflow_loader_is_never_called(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("Loopline must not call MLflow's model loaders")

    monkeypatch.setattr(mlflow.sklearn, "load_model", forbidden)
    monkeypatch.setattr(mlflow.sklearn, "_load_model_from_local_file", forbidden)
    monkeypatch.setattr(mlflow.pyfunc, "load_model", forbidden)
    assert tracking.load_model(f"models:/safety/{store.versions['genuine']}", store.settings) is not None


def test_oversized_mlmodel_is_refused_before_parsing(store: Store, tmp_path: Path) -> None:
    folder = Variant("x: " + "a" * (tracking.MAX_MLMODEL_BYTES + 1), {}, ()).write(tmp_path / "big")
    c = tracking.client(store.settings)
    version = register_folder(c, "safety_big", tracking.configure(store.settings), folder)
    with pytest.raises(UnsafeModelError, match="bytes"):
        tracking.load_model(f"models:/safety_big/{version}", store.settings)


def test_logged_model_and_run_uris_get_the_same_checks(store: Store) -> None:
    """``models:/m-<id>`` (what log_training_run returns unregistered) and ``runs:/`` URIs: same rules."""
    import mlflow

    experiment_id = tracking.configure(store.settings)
    with mlflow.start_run(experiment_id=experiment_id) as run:
        skops_info = mlflow.sklearn.log_model(store.genuine, name="ok", serialization_format="skops",
                                              pip_requirements=[])
        pickle_info = mlflow.sklearn.log_model(store.genuine, name="bad", serialization_format="pickle",
                                               pip_requirements=[])
    for uri in (skops_info.model_uri, f"runs:/{run.info.run_id}/ok"):
        assert isinstance(tracking.load_model(uri, store.settings), LogisticRegression), uri
    for uri in (pickle_info.model_uri, f"runs:/{run.info.run_id}/bad"):
        with pytest.raises(UnsafeModelError, match=rf"refusing to load {re.escape(uri)}: .*'pickle'"):
            tracking.load_model(uri, store.settings)
