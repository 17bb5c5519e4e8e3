from __future__ import annotations

import numpy as np
import pytest
from loopline.features import FEATURES_DATASET, empty_features
from loopline.scoring import PREDICTIONS_DATASET, score_partition
from loopline.store import PartitionStore
from loopline.training import TrainingWindow, load_window, model_input, train

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model(feature_store: PartitionStore):  # type: ignore[no-untyped-def]
    w = TrainingWindow.ending("2013-01-28", 21, 5)
    return train(load_window(feature_store, "1", w), w, "1", seed=0, params={"max_iter": 40}).model


def test_streamed_scores_equal_in_memory(feature_store: PartitionStore, tmp_path, model) -> None:  # type: ignore[no-untyped-def]
    out = PartitionStore(tmp_path.as_uri())
    day = "2013-02-01"
    # Copy the day's features into a scratch store so the shared fixture stays read-only.
    feats = feature_store.read(FEATURES_DATASET, "1", day)
    out.write(FEATURES_DATASET, "1", day, feats)
    m = score_partition(out, day, model, version="1", model_name="delay", model_version="7", batch_rows=97)
    preds = out.read(PREDICTIONS_DATASET, "1", day)
    assert m.rows == len(feats) == len(preds)
    assert preds["flight_id"].tolist() == feats["flight_id"].tolist()
    np.testing.assert_allclose(preds["score"], model.predict_proba(model_input(feats, "1"))[:, 1], rtol=0, atol=0)
    assert set(preds["model_version"]) == {"7"} and set(preds["model_name"]) == {"delay"}
    assert m.extra["model_version"] == "7"
    again = score_partition(out, day, model, version="1", model_name="delay", model_version="7", batch_rows=5000)
    assert again.content_hash == m.content_hash  # batch size does not change the result
    serial = score_partition(out, day, model, version="1", model_name="delay", model_version="7", batch_rows=97,
                             workers=1)
    assert serial.content_hash == m.content_hash  # neither do the scoring threads (order is kept)


def test_empty_partition_scores_to_empty_predictions(tmp_path, model) -> None:  # type: ignore[no-untyped-def]
    store = PartitionStore(tmp_path.as_uri())
    store.write(FEATURES_DATASET, "1", "2013-01-09", empty_features("1"))
    m = score_partition(store, "2013-01-09", model, version="1", model_name="d", model_version="1")
    assert m.rows == 0 and store.read(PREDICTIONS_DATASET, "1", "2013-01-09").empty
