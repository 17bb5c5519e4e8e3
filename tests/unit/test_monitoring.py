"""loopline.monitoring.check_day keeps the features the drift engine could not compare in its decision."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loopline import monitoring, steps
from loopline.drift import ReferenceProfile
from loopline.monitoring import Monitored
from loopline.project import Project
from loopline.reports import read_drift_report
from loopline.settings import Settings
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit

DAY = dt.date(2022, 4, 20)


def _features(rng: np.random.Generator, n: int, m: Monitored, categorical: set[str]) -> pd.DataFrame:
    cols = {c: rng.choice(["a", "b"], n) if c in categorical else rng.normal(size=n) for c in m.columns}
    return pd.DataFrame({"rental_ref": [f"R{i}" for i in range(n)], "minutes": rng.normal(20, 5, n), **cols})


def test_a_feature_that_cannot_be_compared_counts_in_the_day_check(tmp_path: Path, bikes: Project,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    m = steps.monitored_spec(bikes, "duration")
    assert (m.features_dataset, m.predictions_dataset, m.reports_dataset, m.keys) == (
        "bikes/features", "bikes/duration/predictions", "bikes/duration/drift", ("rental_ref",))
    categorical = {c for c in m.columns if bikes.features.column(c).kind == "categorical"}
    settings = Settings(home=tmp_path)
    store = PartitionStore((tmp_path / "root").as_uri())
    rng = np.random.default_rng(0)
    numeric = [c for c in m.columns if c not in categorical]
    # More than half the features arrive as text: the engine cannot bin them as in training.
    broken = numeric[: len(m.columns) // 2 + 1]
    profile = ReferenceProfile.fit(_features(rng, 3000, m, categorical)[list(m.columns)])
    for d in monitoring.window_days(m.window_days, DAY):
        day = _features(rng, 200, m, categorical)
        for c in broken:
            day[c] = "n/a"
        store.write(m.features_dataset, m.version, d, day)
    store.write(m.predictions_dataset, m.version, DAY,
                pd.DataFrame({"rental_ref": [f"R{i}" for i in range(200)], "score": rng.random(200),
                              "model_version": "1"}))
    monkeypatch.setattr(monitoring, "reference_for", lambda settings, version: profile)
    check = monitoring.check_day(store, settings, DAY, monitored=m)
    assert check.summary["drifted"] is True
    body = read_drift_report(store, m.version, DAY, dataset=m.reports_dataset)
    assert body is not None
    assert set(body["decision"]["not_compared"]) == set(broken)
    assert set(body["skipped"]) == set(broken)
    assert body["decision"]["n_features"] == len(m.columns)
