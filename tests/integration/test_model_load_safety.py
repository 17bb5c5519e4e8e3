"""No model version can run code in Loopline: scoring and the promotion gate refuse hostile artifacts.

Against the session's real MLflow server (proxied artifacts, the production shape): a genuine model trained
and registered by ``log_training_run`` is served and compared as usual; then hostile versions (a pickle whose
unpickling touches a marker file, a skops file holding a marker-touching class outside the reviewed list,
and every other variant of ``tests/support/hostile_models.py``) are registered beside it and ``champion`` is
pointed at each in turn. Scoring (the champion's path of ``steps.score_model_day``: resolve ``@champion``,
``tracking.load_model``, ``scoring.score_partition``) and the promotion gate (the operator, hence
``promotion.compare_on_same_window`` and its default loader) must refuse each with a message naming the
version and the format or type, and the marker must never appear.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from loopline import promotion, steps
from loopline.project import Project, project_names
from loopline.scoring import score_partition
from loopline.settings import Settings
from loopline.store import Manifest, PartitionStore
from loopline.tracking import CHAMPION, UnsafeModelError, clear_model_cache, load_model, resolve_alias
from loopline.training import evaluate_inputs
from loopline_airflow.exceptions import LooplineUnsafeModelError
from loopline_airflow.operators.registry import MLflowModelPromotionOperator

from tests.integration.conftest import AS_OF, MODEL, PROJECT, RegistryHelper, Trained, task_context
from tests.support.hostile_models import Variant, hostile_variants, register_folder

pytestmark = pytest.mark.integration
DAY = AS_OF  # a day with features in the shared store


class Hostile:
    """Registers hostile variants as versions of the test's model, with the lineage tags of a real one."""

    def __init__(self, registry: RegistryHelper, trained: dict[str, Trained], settings: Settings,
                 folder: Path) -> None:
        self.registry, self.trained, self.folder = registry, trained, folder
        self.marker = folder / "marker"
        self.experiment_id = registry.client.create_experiment(f"{registry.name}_hostile")
        # The hostile pipeline wraps a genuine model, loaded the safe way (a positive control too).
        genuine = load_model(f"models:/{registry.name}/{registry.add('strong')}", settings)
        self.variants = hostile_variants(self.marker, genuine)

    def add(self, key: str, tags_of: str) -> tuple[str, Variant]:
        version = register_folder(self.registry.client, self.registry.name, self.experiment_id,
                                  self.variants[key].write(self.folder / "folders" / key))
        for tag, value in self.trained[tags_of].tags.items():
            self.registry.client.set_model_version_tag(self.registry.name, version, tag, value)
        return version, self.variants[key]


@pytest.fixture
def settings(registry: RegistryHelper, it_settings: Settings) -> Settings:
    return dataclasses.replace(it_settings, model_name=registry.name)


@pytest.fixture
def hostile(registry: RegistryHelper, trained: dict[str, Trained], settings: Settings, tmp_path: Path) -> Hostile:
    clear_model_cache()
    return Hostile(registry, trained, settings, tmp_path)


@pytest.fixture
def day_store(feature_store: PartitionStore, flights: Project, tmp_path: Path) -> PartitionStore:
    """A writable store holding one day's features (the shared store is read-only)."""
    features = project_names(flights).features_dataset
    store = PartitionStore((tmp_path / "store").as_uri())
    store.write(features, "1", DAY, feature_store.read(features, "1", DAY))
    return store


def score_champion(store: PartitionStore, settings: Settings, flights: Project) -> Manifest:
    """Score DAY with the ``champion`` of the test's registered model, as ``steps.score_model_day`` does."""
    version = resolve_alias(settings, CHAMPION)
    assert version is not None
    model = load_model(f"models:/{settings.model_name}/{version}", settings)
    return score_partition(store, DAY, model, version="1", model_name=settings.model_name, model_version=version,
                           scored=steps.scored_spec(flights, MODEL), workers=1)


def _assert_refusal(text: str, name: str, version: str, says: tuple[str, ...]) -> None:
    assert f"registered model {name!r} version {version}" in text, text
    for part in says:
        assert part in text, (part, text)
    assert "Nothing of this artifact was executed" in text


def test_scoring_serves_the_genuine_champion_and_refuses_hostile_ones(
        registry: RegistryHelper, hostile: Hostile, day_store: PartitionStore, settings: Settings,
        flights: Project) -> None:
    predictions = steps.scored_spec(flights, MODEL).predictions_dataset
    genuine = registry.add("strong")
    registry.client.set_registered_model_alias(registry.name, CHAMPION, genuine)
    assert score_champion(day_store, settings, flights).rows > 500  # the loop works with a genuine champion
    day_store.delete(predictions, "1", DAY)
    for key in ("pickle", "skops_custom_class"):
        version, variant = hostile.add(key, tags_of="strong")
        registry.client.set_registered_model_alias(registry.name, CHAMPION, version)
        with pytest.raises(UnsafeModelError) as err:
            score_champion(day_store, settings, flights)
        _assert_refusal(str(err.value), registry.name, version, variant.says)
        assert not day_store.exists(predictions, "1", DAY)
        assert not hostile.marker.exists()


@pytest.mark.parametrize("hostile_side", ["champion", "candidate"])
def test_promotion_gate_refuses_a_hostile_champion_or_candidate(
        registry: RegistryHelper, hostile: Hostile, mlflow_conn: str, feature_store: PartitionStore,
        hostile_side: str) -> None:
    for key in ("pickle", "skops_custom_class"):
        # Different logged windows, so the gate loads both models to re-evaluate them on the same days.
        if hostile_side == "champion":
            bad, variant = hostile.add(key, tags_of="strong_early")
            champion, candidate = bad, registry.add("strong")
        else:
            bad, variant = hostile.add(key, tags_of="strong")
            champion, candidate = registry.add("strong_early"), bad
        registry.client.set_registered_model_alias(registry.name, CHAMPION, champion)
        gate = MLflowModelPromotionOperator(
            task_id="promote", model_name=registry.name, project=PROJECT, project_model=MODEL,
            candidate_version=candidate, mlflow_conn_id=mlflow_conn, store_root=feature_store.root,
            retry_backoff_seconds=0.1)
        with pytest.raises(LooplineUnsafeModelError) as err:
            gate.execute(task_context(f"run-{key}-{hostile_side}"))
        _assert_refusal(str(err.value), registry.name, bad, variant.says)
        assert isinstance(err.value.__cause__, UnsafeModelError)
        assert registry.champion() == champion  # nothing promoted
        assert not hostile.marker.exists()


def test_every_variant_is_refused_through_the_gates_loader(
        registry: RegistryHelper, hostile: Hostile, feature_store: PartitionStore, settings: Settings,
        flights: Project) -> None:
    """The class of the gap, through compare_on_same_window's default loader, against the real server."""
    reg = promotion.Registry(registry.client, registry.name)
    inputs = steps.model_inputs(flights, MODEL)
    judging = {"dataset": project_names(flights).features_dataset,
               "evaluate": lambda model, frame, fsv: evaluate_inputs(model, frame, inputs)}
    champion = registry.add("strong_early")
    registry.client.set_registered_model_alias(registry.name, CHAMPION, champion)
    for key in sorted(hostile.variants):
        bad, variant = hostile.add(key, tags_of="strong")  # the candidate is loaded first
        with pytest.raises(UnsafeModelError) as err:
            promotion.compare_on_same_window(reg, bad, champion, store=feature_store, settings=settings, **judging)
        _assert_refusal(str(err.value), registry.name, bad, variant.says)
        assert not hostile.marker.exists(), key
