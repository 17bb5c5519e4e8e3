"""loopline.training on the bikes project: a binary model with its own estimator and a regression with the task's
default, both with rows whose labels are missing."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest
from loopline import steps
from loopline.project import Project, project_names
from loopline.store import PartitionStore
from loopline.tasktypes import task_type
from loopline.training import (
    TrainingDataError,
    TrainingWindow,
    evaluate_inputs,
    fit_window,
    load_window_of,
    model_frame,
)

pytestmark = pytest.mark.unit
WINDOW = TrainingWindow.ending("2022-04-05", 28, 7)
MODELS = ["late_return", "duration"]


@pytest.fixture(scope="module")
def window_frame(bikes: Project, bikes_store: PartitionStore) -> pd.DataFrame:
    return load_window_of(bikes_store, project_names(bikes).features_dataset, "2", WINDOW)


def fit(bikes: Project, frame: pd.DataFrame, name: str, seed: int | None = None) -> object:
    inputs = steps.model_inputs(bikes, name)
    if seed is not None:
        inputs = dataclasses.replace(inputs, seed=seed)
    return fit_window(frame, WINDOW, inputs, feature_set_version="2")


def test_window_arithmetic() -> None:
    w = TrainingWindow.ending(dt.date(2013, 3, 31), 60, 7)
    assert (w.start, w.validation_start, w.end) == (dt.date(2013, 1, 31), dt.date(2013, 3, 25), dt.date(2013, 3, 31))
    with pytest.raises(TrainingDataError, match="must exceed"):
        TrainingWindow.ending("2013-03-31", 7, 7)


@pytest.mark.parametrize("name", MODELS)
def test_time_based_split_and_metrics_skip_rows_without_a_label(bikes: Project, window_frame: pd.DataFrame,
                                                                name: str) -> None:
    spec = bikes.models[name]
    r = fit(bikes, window_frame, name)
    days = pd.to_datetime(window_frame["ds"]).dt.date
    labelled = window_frame[spec.label.column].notna()
    assert (~labelled).sum() > 0  # the bikes data has rentals not yet returned: no label, no row
    held_out = days >= WINDOW.validation_start
    assert r.validation_rows == int((held_out & labelled).sum())
    assert r.train_rows == int((~held_out & labelled).sum())
    assert set(r.metrics) == set(spec.logged_metrics)
    assert len(r.validation_scores) == r.validation_rows
    assert r.columns == bikes.model_features(name) and r.task == spec.task
    if spec.task == "binary_classification":
        assert 0.5 < r.metrics["roc_auc"] <= 1.0 and 0.0 < r.metrics["brier"] < 0.25  # better than a coin
    else:
        assert r.metrics["r2"] > 0.5 and r.metrics["rmse"] < window_frame[spec.label.column].std()
    assert r.metrics == evaluate_inputs(r.model, window_frame[held_out], steps.model_inputs(bikes, name))


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_given_seed(bikes: Project, window_frame: pd.DataFrame, name: str) -> None:
    a = fit(bikes, window_frame, name, seed=3)
    b = fit(bikes, window_frame.sample(frac=1.0, random_state=9), name, seed=3)  # row order too
    assert a.metrics == b.metrics and a.content_hash == b.content_hash
    inputs = steps.model_inputs(bikes, name)
    x = model_frame(window_frame.head(200), inputs.columns, inputs.categorical)
    task = task_type(inputs.task)
    np.testing.assert_array_equal(task.predict(a.model, x), task.predict(b.model, x))


def test_unknown_categories_are_scored(bikes: Project, window_frame: pd.DataFrame) -> None:
    r = fit(bikes, window_frame, "late_return")
    odd = window_frame.head(3).copy()
    odd["station"] = pd.Series(["harbour", None, "airport"], dtype="string")
    inputs = steps.model_inputs(bikes, "late_return")
    p = task_type(inputs.task).predict(r.model, model_frame(odd, inputs.columns, inputs.categorical))
    assert ((p > 0) & (p < 1)).all()


def test_bad_windows_are_explained(bikes: Project, window_frame: pd.DataFrame, bikes_store: PartitionStore) -> None:
    with pytest.raises(TrainingDataError, match="backfill more"):
        fit(bikes, window_frame.head(50), "late_return")
    one_class = window_frame.assign(late="N")
    with pytest.raises(TrainingDataError, match="one class"):
        fit(bikes, one_class, "late_return")
    with pytest.raises(TrainingDataError, match="no feature partitions"):
        load_window_of(bikes_store, "bikes/features", "2", TrainingWindow.ending("2024-06-30", 10, 2))


def test_models_fit_and_predict_on_one_openmp_thread(bikes: Project, window_frame: pd.DataFrame,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """HistGradientBoosting's fit and predict run on MODEL_OPENMP_THREADS OpenMP threads, whatever the process
    allows; the process's own limit is back afterwards."""
    from loopline import tasktypes
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_info, threadpool_limits

    def openmp_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"}

    seen: dict[str, set[int]] = {}
    real_fit, real_predict = HistGradientBoostingRegressor.fit, HistGradientBoostingRegressor.predict

    def fit_spy(self: object, *args: object, **kwargs: object) -> object:
        seen["fit"] = openmp_threads()
        return real_fit(self, *args, **kwargs)  # type: ignore[arg-type]

    def predict_spy(self: object, *args: object, **kwargs: object) -> object:
        seen["predict"] = openmp_threads()
        return real_predict(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(HistGradientBoostingRegressor, "fit", fit_spy)
    monkeypatch.setattr(HistGradientBoostingRegressor, "predict", predict_spy)
    assert bikes.models["duration"].estimator.factory is None  # the task's default: HistGradientBoosting
    with threadpool_limits(2, user_api="openmp"):
        fit(bikes, window_frame, "duration")
        assert openmp_threads() == {2}
    assert openmp_threads(), "no OpenMP runtime loaded: nothing measured"
    assert seen == {"fit": {tasktypes.MODEL_OPENMP_THREADS}, "predict": {tasktypes.MODEL_OPENMP_THREADS}}
