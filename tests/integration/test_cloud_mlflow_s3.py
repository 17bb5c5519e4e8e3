"""MLflow with its artifacts on S3: ``mlflow server --artifacts-destination s3://…`` against moto on loopback.

The server holds the S3 credentials and ``MLFLOW_S3_ENDPOINT_URL``; clients log and load through the server's
artifact proxy (``mlflow-artifacts:/``) with no S3 credentials of their own. The features come from a store
on the same S3 server, so the whole core loop (features → train → register → champion → score) runs on
object storage.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopline.features import FEATURES_DATASET
from loopline.pipeline import build_features_day, score_day, store_for, train_and_register
from loopline.scoring import PREDICTIONS_DATASET
from loopline.settings import Settings
from loopline.sources import NycFlights13Source
from loopline.tracking import CHAMPION, REFERENCE_PROFILE_ARTIFACT, client, load_model, load_reference_profile
from loopline.training import model_input

from tests.support.mlflow_server import MlflowServer, mlflow_server
from tests.support.moto_server import MotoS3, moto_s3

pytestmark = pytest.mark.integration
FIRST, DAYS = dt.date(2013, 1, 7), 10
AS_OF = FIRST + dt.timedelta(days=DAYS - 1)
MODEL = "loopline_s3_it"


@pytest.fixture(scope="module")
def s3() -> Iterator[MotoS3]:
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
def s3_mlflow(s3: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    s3.create_bucket("mlflow-artifacts")
    with mlflow_server(tmp_path_factory.mktemp("mlflow-s3"), artifacts_destination="s3://mlflow-artifacts/mlflow",
                       env=s3.aws_env()) as server:
        yield server


def test_model_logged_registered_and_loaded_by_alias_with_artifacts_on_s3(
    s3: MotoS3, s3_mlflow: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.create_bucket("loopline-mlflow-it")
    for key, value in s3.aws_env().items():  # the store's s3fs reads these; MLflow's client never needs them
        if key != "MLFLOW_S3_ENDPOINT_URL":
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    settings = Settings(home=tmp_path, store_root=f"s3://{bucket}/loopline",
                        store_options=json.dumps({"endpoint_url": s3.endpoint}),
                        mlflow_tracking_uri=s3_mlflow.uri, model_name=MODEL, train_window_days=DAYS,
                        validation_days=3)
    store = store_for(settings)
    source = NycFlights13Source()
    for i in range(DAYS):
        build_features_day(source, store, FIRST + dt.timedelta(days=i), "1")
    assert len(store.days(FEATURES_DATASET, "1")) == DAYS

    registered = train_and_register(store, settings, AS_OF, params={"max_iter": 20})
    c = client(settings)
    c.set_registered_model_alias(MODEL, CHAMPION, registered.version)
    run = c.get_run(registered.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the server writes to S3

    keys = s3.keys("mlflow-artifacts", "mlflow/")
    assert any(k.endswith(f"/{REFERENCE_PROFILE_ARTIFACT}") for k in keys), keys
    assert any(k.endswith("/MLmodel") for k in keys), keys
    assert any(k.endswith(".skops") for k in keys), keys

    model = load_model(f"models:/{MODEL}@{CHAMPION}", settings)
    frame = store.read(FEATURES_DATASET, "1", AS_OF)
    scores = model.predict_proba(model_input(frame, "1"))[:, 1]
    assert len(scores) == len(frame) and ((scores >= 0) & (scores <= 1)).all()
    assert load_reference_profile(settings, registered.version).features  # read back from S3 too

    result = score_day(store, settings, AS_OF)  # resolves @champion, writes predictions to the S3 store
    assert result.rows == len(frame)
    assert store.read(PREDICTIONS_DATASET, "1", AS_OF)["model_version"].astype(str).unique().tolist() == [
        registered.version]
