"""loopline.scoring on a project of the bikes shape: streamed scores equal in-memory ones, for either task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from loopline import steps
from loopline.project import Project
from loopline.scoring import Scored, score_partition
from loopline.store import PartitionStore
from loopline.tasktypes import task_type
from loopline.training import TrainingWindow, fit_window, load_window_of, model_frame

pytestmark = pytest.mark.unit
DAY = "2022-04-05"


@pytest.fixture(scope="module", params=["late_return", "duration"])
def fitted(request: pytest.FixtureRequest, bikes: Project, bikes_store: PartitionStore) -> tuple[str, Any]:
    name = request.param
    w = TrainingWindow.ending("2022-03-31", 21, 5)
    frame = load_window_of(bikes_store, steps.scored_spec(bikes, name).features_dataset, "2", w)
    return name, fit_window(frame, w, steps.model_inputs(bikes, name), feature_set_version="2").model


def test_streamed_scores_equal_in_memory(bikes: Project, bikes_store: PartitionStore, tmp_path,  # type: ignore[no-untyped-def]
                                         fitted: tuple[str, Any]) -> None:
    name, model = fitted
    spec = steps.scored_spec(bikes, name)
    out = PartitionStore(tmp_path.as_uri())
    # Copy the day's features into a scratch store so the shared fixture stays read-only.
    feats = bikes_store.read(spec.features_dataset, "2", DAY)
    out.write(spec.features_dataset, "2", DAY, feats)
    m = score_partition(out, DAY, model, version="2", model_name="bikes.x", model_version="7", batch_rows=37,
                        scored=spec)
    preds = out.read(spec.predictions_dataset, "2", DAY)
    assert m.rows == len(feats) == len(preds)
    assert list(preds.columns) == [*spec.keys, "score", "model_name", "model_version", "feature_set_version"]
    assert preds["rental_ref"].tolist() == feats["rental_ref"].tolist()
    expected = task_type(spec.task).predict(model, model_frame(feats, list(spec.columns), list(spec.categorical)))
    np.testing.assert_allclose(preds["score"], expected, rtol=0, atol=0)
    if spec.task == "binary_classification":
        assert preds["score"].between(0, 1).all()
    assert set(preds["model_version"]) == {"7"} and set(preds["model_name"]) == {"bikes.x"}
    assert m.extra["model_version"] == "7"
    again = score_partition(out, DAY, model, version="2", model_name="bikes.x", model_version="7", batch_rows=5000,
                            scored=spec)
    assert again.content_hash == m.content_hash  # batch size does not change the result
    serial = score_partition(out, DAY, model, version="2", model_name="bikes.x", model_version="7", batch_rows=37,
                             workers=1, scored=spec)
    assert serial.content_hash == m.content_hash  # neither do the scoring threads (order is kept)


@pytest.mark.parametrize("workers", [1, 2])
def test_empty_partition_scores_to_empty_predictions_keeping_key_dtypes(tmp_path, workers: int) -> None:  # type: ignore[no-untyped-def]
    spec = Scored(("x",), (), ("at", "ref"), "regression", "p/features", "p/m/predictions")
    store = PartitionStore(tmp_path.as_uri())
    empty = pd.DataFrame({"at": pd.Series(dtype="datetime64[us, UTC]"), "ref": pd.Series(dtype="string"),
                          "ds": pd.Series(dtype="string"), "x": pd.Series(dtype="float64")})
    store.write("p/features", "1", "2013-01-09", empty)
    m = score_partition(store, "2013-01-09", None, version="1", model_name="d", model_version="1", scored=spec,
                        workers=workers)  # no rows: the model is never called
    preds = store.read("p/m/predictions", "1", "2013-01-09")
    assert m.rows == 0 and preds.empty
    assert str(preds["at"].dtype) == "datetime64[us, UTC]" and str(preds["score"].dtype) == "float64"
