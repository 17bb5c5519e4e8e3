"""Promotion and rollback operators: execute() against an in-memory registry."""

from __future__ import annotations

import pytest
from loopline_airflow.exceptions import LooplineConfigurationError, LooplineRegistryUnavailable
from loopline_airflow.hooks.mlflow import MLflowHook
from loopline_airflow.operators.registry import (
    MLflowModelPromotionOperator,
    MLflowModelRollbackOperator,
    validation_passed,
)

from tests.support.fake_mlflow import FakeMlflowClient
from tests.unit.plugins.conftest import make_context

pytestmark = pytest.mark.unit
PROJECT, MODEL = "flights", "disruption"  # the gate judges a project model
WINDOW = {"loopline.validation_start": "2013-01-29", "loopline.window_end": "2013-02-04",
          "loopline.feature_set_version": "1"}


@pytest.fixture
def client(monkeypatch) -> FakeMlflowClient:
    fake = FakeMlflowClient()
    monkeypatch.setattr(MLflowHook, "client", fake)  # replaces the cached_property on the class
    return fake


def promote_op(version: str, **kw) -> MLflowModelPromotionOperator:
    return MLflowModelPromotionOperator(task_id="promote", project=PROJECT, project_model=MODEL, model_name="m",
                                        candidate_version=version, retry_backoff_seconds=0,
                                        store_root="memory://unused", **kw)


def test_template_fields_match_arguments():
    op = promote_op("1")
    for name in op.template_fields:
        assert hasattr(op, name)
    assert set(MLflowModelRollbackOperator.template_fields) == {"model_name", "to_version", "reason"}


def test_promote_then_reject_then_rollback(client):
    a = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.70"})
    b = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.68"})
    c = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.80"})
    assert promote_op(a).execute(make_context("r1"))["action"] == "promote"
    out = promote_op(b).execute(make_context("r2"))
    assert out["action"] == "reject" and client.models["m"].aliases["champion"] == a
    out = promote_op(c, min_improvement="0.05").execute(make_context("r3"))
    assert out["action"] == "promote" and out["context"]["dag_run_id"] == "r3"
    assert client.models["m"].aliases["champion"] == c
    rb = MLflowModelRollbackOperator(task_id="rb", model_name="m", retry_backoff_seconds=0, reason="oops")
    assert rb.execute(make_context("rb1"))["version"] == a


def test_candidate_already_champion_without_record_is_a_no_op(client):
    v = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.7"})
    client.models["m"].aliases["champion"] = v
    before = client.state()
    out = promote_op(v).execute(make_context())
    assert out["action"] == "promote" and "already is the champion" in out["reason"]
    assert client.state() == before


def test_validation_argument_and_version_tag(client):
    v = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.9"})
    assert promote_op(v, validation="False").execute(make_context())["action"] == "reject"
    w = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.9", "loopline.validation_passed": "false"})
    assert promote_op(w).execute(make_context())["action"] == "reject"
    assert validation_passed({"success": True}) and not validation_passed("false") and validation_passed(None)
    assert not validation_passed("{'success': False, 'failures': [], 'result_uri': None}")  # str() of the XCom
    assert validation_passed('{"success": true}') and validation_passed("None")
    with pytest.raises(LooplineConfigurationError):
        validation_passed({"rows": 3})
    with pytest.raises(LooplineConfigurationError):
        validation_passed("maybe")


@pytest.mark.parametrize(("version", "kw", "match"), [
    ("", {}, "candidate_version is empty"),
    ("5", {}, "version '5' of registered model 'm' does not exist"),
    ("1", {"metric": "f1"}, "no value for metric 'f1'"),
    ("1", {"min_improvement": "lots"}, "not a number"),
    ("1", {"force": "perhaps"}, "not a boolean"),
])
def test_bad_input_fails_without_retry(client, version, kw, match):
    client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.7"})
    with pytest.raises(LooplineConfigurationError, match=match):
        promote_op(version, **kw).execute(make_context())


def test_unavailable_registry_is_retryable_and_unchanged(client):
    v = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.7"})
    before = client.state()
    client.unavailable_for = 100
    with pytest.raises(LooplineRegistryUnavailable, match="did not answer"):
        promote_op(v).execute(make_context())
    assert client.state() == before


def test_unsafe_model_fails_without_retry(client, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException
    from loopline import promotion
    from loopline.tracking import UnsafeModelError
    from loopline_airflow.exceptions import LooplineUnsafeModelError

    def refuse(*args, **kwargs):
        raise UnsafeModelError("refusing to load models:/m/1 (registered model 'm' version 1): pickle")

    monkeypatch.setattr(promotion, "compare_on_same_window", refuse)
    v = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.7"})
    with pytest.raises(LooplineUnsafeModelError, match="version 1") as err:
        promote_op(v).execute(make_context())
    assert isinstance(err.value, AirflowFailException)
