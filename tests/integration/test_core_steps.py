"""The core steps end to end without Airflow, on the bikes project and a local MLflow (SQLite):
features → no champion yet → train and register with lineage → the gate → score with the champion."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from loopline import lineage, steps
from loopline.project import Project, model_names, project_names
from loopline.settings import Settings
from loopline.store import PartitionStore
from loopline.tracking import CHAMPION, client, load_reference_profile, resolve_alias

from tests.support.bikes_project import START

pytestmark = pytest.mark.integration
MODEL = "late_return"  # a binary label with missing values, the project's own estimator, a subset of the features


def test_core_steps_over_three_weeks(tmp_path: Path, bikes: Project) -> None:
    settings = Settings(home=tmp_path)
    store = PartitionStore(settings.store_root)
    features, names = project_names(bikes).features_dataset, model_names(bikes, MODEL)
    days = [START + dt.timedelta(days=i) for i in range(22)]
    for d in days:
        assert steps.features_day(bikes, store, d).status == "written"  # validated with the generated suite
    with pytest.raises(steps.NoChampionError, match="no @champion"):
        steps.score_model_day(bikes, MODEL, store, settings, days[-1])

    reg = steps.train_model(bikes, MODEL, store, settings, days[-2], context={"trigger": "manual", "dag_id": "none"})
    assert reg.name == names.registered_model == "bikes.late_return"
    c = client(steps.model_settings(settings, bikes, MODEL))
    mv = c.get_model_version(reg.name, reg.version)
    tags = mv.tags
    assert tags["loopline.window_start"] == START.isoformat() and tags["loopline.window_end"] == days[-2].isoformat()
    assert tags["loopline.trigger"] == "manual" and tags["loopline.feature_set_version"] == "2"
    assert tags["loopline.project"] == "bikes" and tags["loopline.model"] == MODEL
    assert tags["loopline.git_revision"] == lineage.git_revision()
    labelled = sum(int(store.read(features, "2", d)["late"].notna().sum()) for d in days[:-1])
    assert int(tags["loopline.train_rows"]) + int(tags["loopline.validation_rows"]) == labelled  # no label: no row
    run = c.get_run(reg.run_id)
    assert set(run.data.metrics) >= {"val_roc_auc", "val_pr_auc", "val_log_loss", "val_brier"}
    assert run.data.params["seed"] == str(bikes.models[MODEL].training.seed)
    profile = load_reference_profile(steps.model_settings(settings, bikes, MODEL), reg.version)
    assert set(profile.features) == {*bikes.model_features(MODEL), "score"}  # this model's inputs only
    assert profile.validation_metrics["pr_auc"] == reg.metrics["pr_auc"]

    decision = steps.gate(bikes, MODEL, store, settings, reg.version, context={"dag_id": "none"})
    assert decision.action == "promote" and decision.metric == "pr_auc" and decision.champion_version is None
    assert resolve_alias(steps.model_settings(settings, bikes, MODEL), CHAMPION) == reg.version
    result = steps.score_model_day(bikes, MODEL, store, settings, days[-1])  # the day after the training window
    preds = store.read(names.predictions_dataset, "2", days[-1])
    assert result.rows == len(preds) == store.manifest(features, "2", days[-1]).rows
    assert list(preds.columns[:1]) == ["rental_ref"]
    assert set(preds["model_version"]) == {reg.version} and preds["score"].between(0, 1).all()
