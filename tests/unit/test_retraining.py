"""Retrain planning: which trigger, which as-of day, cooldown and stale drift events (MLflow on a SQLite file)."""

from __future__ import annotations

import datetime as dt

import pytest
from loopline.retraining import RetrainRequest, plan
from loopline.settings import Settings
from loopline.store import PartitionStore
from loopline.tracking import CHAMPION, client

pytestmark = pytest.mark.unit
FEATURES = "shop/features"  # a project's features dataset (plan reads its days)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp_path = tmp_path_factory.mktemp("registry")
    s = Settings(home=tmp_path, model_name="plan_test")
    c = client(s)
    c.create_registered_model(s.model_name)
    for end in ("2013-02-28", "2013-03-20"):  # v1 (champion), v2 (rejected, newer window)
        c.create_model_version(s.model_name, source=str(tmp_path / "nowhere"), tags={"loopline.window_end": end})
    c.set_registered_model_alias(s.model_name, CHAMPION, "1")
    return s


def store_with_days(settings: Settings, *days: str) -> PartitionStore:
    import pandas as pd

    store = PartitionStore(f"{settings.store_root}-{'-'.join(days) or 'empty'}")
    for d in days:
        store.write(FEATURES, "1", d, pd.DataFrame({"x": [1]}))
    return store


def drift(ds: str, version: str = "1") -> dict:
    return {"ds": ds, "model_version": version, "top_features": [["temp", 3.2], ["dewp", 1.1]]}


def test_drift_takes_the_newest_event_about_the_champion(registry: Settings) -> None:
    store = store_with_days(registry, "2013-04-10")
    p = plan(RetrainRequest("asset_triggered", [drift("2013-04-08"), drift("2013-04-10"), drift("2013-04-12", "9")],
                            cooldown_days=14), registry, store, features_dataset=FEATURES)
    assert (p.trigger, p.as_of, p.skip) == ("drift", "2013-04-10", "")
    assert "temp (PSI 3.200)" in p.reason
    assert len(p.ignored_events) == 1 and "champion is now 1" in p.ignored_events[0]


def test_cooldown_counts_data_days_since_the_newest_version(registry: Settings) -> None:
    store = store_with_days(registry, "2013-03-30")
    p = plan(RetrainRequest("asset_triggered", [drift("2013-03-30")], cooldown_days=14), registry, store,
             features_dataset=FEATURES)
    assert p.skip.startswith("cooldown") and "2013-03-20" in p.skip  # the rejected v2 counts too
    forced = plan(RetrainRequest("asset_triggered", [drift("2013-03-30")], cooldown_days=14, force=True),
                  registry, store, features_dataset=FEATURES)
    assert forced.skip == "" and forced.as_of == "2013-03-30"


def test_events_about_a_former_champion_are_ignored(registry: Settings) -> None:
    p = plan(RetrainRequest("asset_triggered", [drift("2013-05-01", "2")]), registry, store_with_days(registry),
             features_dataset=FEATURES)
    assert p.skip and "model version 2 ignored" in p.skip and "champion is now 1" in p.skip


def test_manual_and_cron_pick_their_day(registry: Settings) -> None:
    store = store_with_days(registry, "2013-05-01", "2013-05-02", "2013-05-09")
    manual = plan(RetrainRequest("manual"), registry, store, features_dataset=FEATURES)
    assert (manual.trigger, manual.as_of) == ("manual", "2013-05-09")
    chosen = plan(RetrainRequest("manual", as_of="2013-05-02"), registry, store, features_dataset=FEATURES)
    assert chosen.as_of == "2013-05-02"
    cron = plan(RetrainRequest("scheduled", logical_date=dt.date(2013, 5, 6)), registry, store,
                features_dataset=FEATURES)
    assert (cron.trigger, cron.as_of) == ("cron", "2013-05-02")  # the latest day before the run
    empty = plan(RetrainRequest("scheduled", logical_date=dt.date(2013, 1, 1)), registry, store,
                 features_dataset=FEATURES)
    assert empty.skip.startswith("no feature partitions")
