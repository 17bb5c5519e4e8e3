"""loopline.monitoring.check_day keeps the features the drift engine could not compare in its decision."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from loopline import monitoring
from loopline.drift import ReferenceProfile
from loopline.features import FEATURES_DATASET, categorical_columns, model_columns
from loopline.reports import read_drift_report
from loopline.scoring import PREDICTIONS_DATASET
from loopline.settings import Settings
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit

DAY = dt.date(2013, 3, 20)


def _features(rng: np.random.Generator, n: int, fsv: str) -> pd.DataFrame:
    cats = set(categorical_columns(fsv))
    cols = {c: rng.choice(["a", "b"], n) if c in cats else rng.normal(size=n) for c in model_columns(fsv)}
    return pd.DataFrame({"flight_id": np.arange(n), "label": rng.integers(0, 2, n), **cols})


def test_a_feature_that_cannot_be_compared_counts_in_the_day_check(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path)
    fsv = settings.feature_set_version
    store = PartitionStore((tmp_path / "root").as_uri())
    rng = np.random.default_rng(0)
    numeric = [c for c in model_columns(fsv) if c not in set(categorical_columns(fsv))]
    # Half the numeric features (and more) arrive as text: the engine cannot bin them as in training.
    broken = numeric[: len(model_columns(fsv)) // 2 + 1]
    profile = ReferenceProfile.fit(_features(rng, 3000, fsv)[model_columns(fsv)])
    for d in monitoring.window_days(settings, DAY):
        day = _features(rng, 200, fsv)
        for c in broken:
            day[c] = "n/a"
        store.write(FEATURES_DATASET, fsv, d, day)
    store.write(PREDICTIONS_DATASET, fsv, DAY,
                pd.DataFrame({"flight_id": np.arange(200), "score": rng.random(200), "model_version": "1"}))
    monkeypatch.setattr(monitoring, "reference_for", lambda settings, version: profile)
    check = monitoring.check_day(store, settings, DAY)
    assert check.summary["drifted"] is True
    body = read_drift_report(store, fsv, DAY)
    assert body is not None
    assert set(body["decision"]["not_compared"]) == set(broken)
    assert set(body["skipped"]) == set(broken)
    assert body["decision"]["n_features"] == len(model_columns(fsv))
