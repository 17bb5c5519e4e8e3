"""The core loop end to end without Airflow: land → features → train → register → score, on four weeks."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from loopline import lineage
from loopline.features import FEATURES_DATASET
from loopline.pipeline import NoChampionError, build_features_day, score_day, train_and_register
from loopline.scoring import PREDICTIONS_DATASET
from loopline.settings import Settings
from loopline.sources import NycFlights13Source, StoreRawSource, land_day
from loopline.store import PartitionStore
from loopline.tracking import CHAMPION, client, load_reference_profile

pytestmark = pytest.mark.integration


def test_core_loop_over_four_weeks(tmp_path: Path, source: NycFlights13Source) -> None:
    settings = Settings(home=tmp_path, model_name="core_loop", train_window_days=28, validation_days=7)
    store = PartitionStore(settings.store_root)
    days = [dt.date(2013, 3, 1) + dt.timedelta(days=i) for i in range(29)]
    for d in days:
        land_day(source, store, d)
        assert build_features_day(StoreRawSource(store), store, d, "1").status == "written"
    with pytest.raises(NoChampionError, match="no @champion"):
        score_day(store, settings, days[-1])

    reg = train_and_register(store, settings, days[-2], params={"max_iter": 60},
                             context={"trigger": "manual", "dag_id": "none"})
    c = client(settings)
    mv = c.get_model_version("core_loop", reg.version)
    tags = mv.tags
    assert tags["loopline.window_start"] == "2013-03-01" and tags["loopline.window_end"] == "2013-03-28"
    assert tags["loopline.trigger"] == "manual" and tags["loopline.feature_set_version"] == "1"
    assert tags["loopline.git_revision"] == lineage.git_revision()
    assert int(tags["loopline.train_rows"]) + int(tags["loopline.validation_rows"]) == sum(
        store.manifest(FEATURES_DATASET, "1", d).rows for d in days[:-1])
    run = c.get_run(reg.run_id)
    assert set(run.data.metrics) >= {"val_roc_auc", "val_pr_auc", "val_log_loss", "val_brier"}
    assert run.data.params["seed"] == "42"
    profile = load_reference_profile(settings, reg.version)
    assert "score" in profile.features and profile.validation_metrics["roc_auc"] == reg.metrics["roc_auc"]

    c.set_registered_model_alias("core_loop", CHAMPION, reg.version)
    result = score_day(store, settings, days[-1])  # the day after the training window
    preds = store.read(PREDICTIONS_DATASET, "1", days[-1])
    assert result.rows == len(preds) == store.manifest(FEATURES_DATASET, "1", days[-1]).rows
    assert set(preds["model_version"]) == {reg.version} and preds["score"].between(0, 1).all()
