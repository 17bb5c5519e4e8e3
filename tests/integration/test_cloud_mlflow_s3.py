"""MLflow with its artifacts on S3: ``mlflow server --artifacts-destination s3://…`` against moto on loopback.

The server holds the S3 credentials and ``MLFLOW_S3_ENDPOINT_URL``; clients log and load through the server's
artifact proxy (``mlflow-artifacts:/``) with no S3 credentials of their own. The bikes project's features go to a
store on the same S3 server, so the whole core loop (features → train → register → champion → score, through the
step functions ``loopline run`` and the DAGs call) runs on object storage.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopline import steps
from loopline.project import Project, model_names, project_names
from loopline.settings import Settings
from loopline.tracking import CHAMPION, REFERENCE_PROFILE_ARTIFACT, client, load_model, load_reference_profile
from loopline.training import model_frame

from tests.support.bikes_project import START
from tests.support.mlflow_server import MlflowServer, mlflow_server
from tests.support.moto_server import MotoS3, moto_s3

pytestmark = pytest.mark.integration
DAYS = 21  # the late_return model trains on 21 days, 5 of them held out
AS_OF = START + dt.timedelta(days=DAYS - 1)
MODEL = "late_return"


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
    s3: MotoS3, s3_mlflow: MlflowServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bikes: Project
) -> None:
    bucket = s3.create_bucket("loopline-mlflow-it")
    for key, value in s3.aws_env().items():  # the store's s3fs reads these; MLflow's client never needs them
        if key != "MLFLOW_S3_ENDPOINT_URL":
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_S3_ENDPOINT_URL", raising=False)
    settings = Settings(home=tmp_path, store_root=f"s3://{bucket}/loopline",
                        store_options=json.dumps({"endpoint_url": s3.endpoint}),
                        mlflow_tracking_uri=s3_mlflow.uri)
    store = steps.store_for(settings)
    features = project_names(bikes).features_dataset
    for i in range(DAYS):
        assert steps.features_day(bikes, store, START + dt.timedelta(days=i)).status == "written"
    assert len(store.days(features, "2")) == DAYS

    registered = steps.train_model(bikes, MODEL, store, settings, AS_OF)
    name = model_names(bikes, MODEL).registered_model
    c = client(settings)
    c.set_registered_model_alias(name, CHAMPION, registered.version)
    run = c.get_run(registered.run_id)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")  # proxied: the server writes to S3

    keys = s3.keys("mlflow-artifacts", "mlflow/")
    assert any(k.endswith(f"/{REFERENCE_PROFILE_ARTIFACT}") for k in keys), keys
    assert any(k.endswith("/MLmodel") for k in keys), keys
    assert any(k.endswith(".skops") for k in keys), keys

    model_settings = steps.model_settings(settings, bikes, MODEL)
    model = load_model(f"models:/{name}@{CHAMPION}", model_settings)
    frame = store.read(features, "2", AS_OF)
    inputs = steps.model_inputs(bikes, MODEL)
    scores = model.predict_proba(model_frame(frame, inputs.columns, inputs.categorical))[:, 1]
    assert len(scores) == len(frame) and ((scores >= 0) & (scores <= 1)).all()
    assert load_reference_profile(model_settings, registered.version).features  # read back from S3 too

    result = steps.score_model_day(bikes, MODEL, store, settings, AS_OF)  # @champion, predictions to the S3 store
    assert result.rows == len(frame)
    predictions = model_names(bikes, MODEL).predictions_dataset
    assert store.read(predictions, "2", AS_OF)["model_version"].astype(str).unique().tolist() == [
        registered.version]
