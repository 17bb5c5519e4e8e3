from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from loopline.store import PartitionStore
from loopline.training import METRICS, TrainingDataError, TrainingWindow, evaluate, load_window, train

pytestmark = pytest.mark.unit
WINDOW = TrainingWindow.ending("2013-02-04", 28, 7)
FAST = {"max_iter": 60}


@pytest.fixture(scope="module")
def window_frame(feature_store: PartitionStore) -> pd.DataFrame:
    return load_window(feature_store, "1", WINDOW)


def test_window_arithmetic() -> None:
    w = TrainingWindow.ending(dt.date(2013, 3, 31), 60, 7)
    assert (w.start, w.validation_start, w.end) == (dt.date(2013, 1, 31), dt.date(2013, 3, 25), dt.date(2013, 3, 31))
    with pytest.raises(TrainingDataError, match="must exceed"):
        TrainingWindow.ending("2013-03-31", 7, 7)


def test_time_based_split_and_metrics(window_frame: pd.DataFrame) -> None:
    r = train(window_frame, WINDOW, "1", seed=1, params=FAST)
    days = pd.to_datetime(window_frame["ds"]).dt.date
    assert r.validation_rows == int((days >= WINDOW.validation_start).sum())
    assert r.train_rows + r.validation_rows == len(window_frame)
    assert set(r.metrics) == set(METRICS)
    assert 0.5 < r.metrics["roc_auc"] <= 1.0
    assert 0.0 < r.metrics["brier"] < 0.25  # better than a coin
    assert len(r.validation_scores) == r.validation_rows
    assert r.metrics == evaluate(r.model, window_frame[days >= WINDOW.validation_start], "1")


def test_deterministic_given_seed(window_frame: pd.DataFrame) -> None:
    a = train(window_frame, WINDOW, "1", seed=3, params=FAST)
    b = train(window_frame.sample(frac=1.0, random_state=9), WINDOW, "1", seed=3, params=FAST)  # row order too
    assert a.metrics == b.metrics and a.content_hash == b.content_hash
    sample = window_frame.head(200)
    from loopline.training import model_input

    np.testing.assert_array_equal(a.model.predict_proba(model_input(sample, "1")),
                                  b.model.predict_proba(model_input(sample, "1")))


def test_unknown_categories_are_scored(window_frame: pd.DataFrame) -> None:
    from loopline.training import model_input

    r = train(window_frame, WINDOW, "1", seed=1, params=FAST)
    odd = window_frame.head(3).copy()
    odd["dest"] = pd.Series(["ZZZ", None, "QQQ"], dtype="string")
    p = r.model.predict_proba(model_input(odd, "1"))[:, 1]
    assert ((p > 0) & (p < 1)).all()


def test_bad_windows_are_explained(window_frame: pd.DataFrame, feature_store: PartitionStore) -> None:
    with pytest.raises(TrainingDataError, match="backfill more"):
        train(window_frame.head(50), WINDOW, "1")
    one_class = window_frame.assign(label=0)
    with pytest.raises(TrainingDataError, match="one class"):
        train(one_class, WINDOW, "1")
    with pytest.raises(TrainingDataError, match="no feature partitions"):
        load_window(feature_store, "1", TrainingWindow.ending("2014-06-30", 10, 2))
