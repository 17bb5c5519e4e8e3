"""The champion/challenger decision and its registry writes (in-memory registry; crashes at every step)."""

from __future__ import annotations

import json
import math

import pytest
from loopline import promotion
from loopline.promotion import (
    MetricMissingError,
    PromotionDecision,
    PromotionError,
    Registry,
    RegistryUnavailableError,
    UnknownModelError,
    build_record,
    decide,
)

from tests.support.fake_mlflow import Crash, FakeMlflowClient

pytestmark = pytest.mark.unit

WINDOW = {"loopline.validation_start": "2013-01-29", "loopline.window_end": "2013-02-04",
          "loopline.feature_set_version": "1"}


# -- decide -----------------------------------------------------------------------------------------------------
def test_first_candidate_is_promoted_when_guardrails_hold():
    d = decide({"roc_auc": 0.7}, None, guardrails={"roc_auc": (0.6, None)})
    assert d.promote and d.delta is None and "no champion" in d.reason


def test_guardrail_rejects_even_without_champion_and_names_the_bound():
    d = decide({"roc_auc": 0.55, "brier": 0.3}, None, guardrails={"roc_auc": (0.6, None), "brier": (None, 0.25)})
    assert d.action == "reject" and d.reason == "guardrail failed: roc_auc = 0.55, required >= 0.6"
    d = decide({"roc_auc": 0.7, "brier": 0.3}, None, guardrails={"brier": [None, 0.25]})
    assert d.reason == "guardrail failed: brier = 0.3, required <= 0.25"


@pytest.mark.parametrize(
    ("cand", "champ", "min_imp", "action", "words"),
    [
        (0.75, 0.70, 0.0, "promote", "better"),
        (0.70, 0.75, 0.0, "reject", "worse"),
        (0.70, 0.70, 0.0, "reject", "no improvement"),
        (0.705, 0.70, 0.01, "reject", "below the minimum"),
        (0.71, 0.70, 0.01, "promote", "better"),
    ],
)
def test_comparison_with_the_champion(cand, champ, min_imp, action, words):
    d = decide({"roc_auc": cand}, {"roc_auc": champ}, min_improvement=min_imp)
    assert d.action == action and words in d.reason
    assert d.delta == pytest.approx(cand - champ)


def test_lower_is_better_metrics():
    d = decide({"log_loss": 0.40}, {"log_loss": 0.45}, metric="log_loss", higher_is_better=False)
    assert d.promote and d.delta == pytest.approx(0.05)
    assert not decide({"log_loss": 0.5}, {"log_loss": 0.45}, metric="log_loss", higher_is_better=False).promote
    assert promotion.metric_direction("log_loss") is False and promotion.metric_direction("roc_auc") is True


def test_force_waives_min_improvement_but_never_promotes_worse_invalid_or_out_of_bounds():
    assert decide({"roc_auc": 0.70}, {"roc_auc": 0.70}, min_improvement=0.05, force=True).promote
    assert not decide({"roc_auc": 0.69}, {"roc_auc": 0.70}, force=True).promote
    assert not decide({"roc_auc": 0.9}, {"roc_auc": 0.7}, force=True, validation_passed=False).promote
    assert not decide({"roc_auc": 0.5}, None, force=True, guardrails={"roc_auc": (0.6, None)}).promote


def test_failed_validation_is_never_promoted():
    d = decide({"roc_auc": 0.99}, None, validation_passed=False)
    assert d.action == "reject" and "validation" in d.reason


def test_nan_candidate_is_rejected():
    assert decide({"roc_auc": math.nan}, {"roc_auc": 0.6}).action == "reject"


def test_missing_metrics_and_bad_arguments_raise_with_what_to_fix():
    with pytest.raises(MetricMissingError, match=r"candidate has no value for metric 'roc_auc'.*loopline\.val_roc"):
        decide({"pr_auc": 0.4}, None)
    with pytest.raises(MetricMissingError, match="the champion"):
        decide({"roc_auc": 0.7}, {"pr_auc": 0.4})
    with pytest.raises(MetricMissingError, match="guardrail"):
        decide({"roc_auc": 0.7}, None, guardrails={"brier": (None, 0.3)})
    with pytest.raises(PromotionError, match="min_improvement"):
        decide({"roc_auc": 0.7}, None, min_improvement=-1)
    with pytest.raises(PromotionError, match="above max"):
        decide({"roc_auc": 0.7}, None, guardrails={"roc_auc": (0.9, 0.1)})


def test_decision_round_trips_as_json():
    d = decide({"roc_auc": 0.75}, {"roc_auc": 0.7}, guardrails={"roc_auc": (0.6, None)})
    assert PromotionDecision.from_dict(json.loads(json.dumps(d.as_dict()))) == d


# -- registry with retries ------------------------------------------------------------------------------------
def test_transient_errors_are_retried_then_fail_clearly():
    client = FakeMlflowClient()
    client.add_version("m")
    sleeps: list[float] = []
    reg = Registry(client, "m", attempts=3, backoff_seconds=0.5, sleep=sleeps.append)
    client.unavailable_for = 2
    assert reg.champion() is None and sleeps == [0.5, 1.0]
    client.unavailable_for = 5
    with pytest.raises(RegistryUnavailableError, match=r"did not answer while trying to read registered model 'm'"):
        reg.champion()


def test_unknown_model_and_version_are_named():
    client = FakeMlflowClient()
    client.add_version("m")
    with pytest.raises(UnknownModelError, match="registered model 'nope' does not exist"):
        Registry(client, "nope").version("1")
    with pytest.raises(UnknownModelError, match="version '7' of registered model 'm' does not exist"):
        Registry(client, "m").version("7")


def test_is_transient():
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    assert promotion.is_transient(ConnectionRefusedError())
    assert promotion.is_transient(MlflowException("API request failed with exception"))  # INTERNAL_ERROR
    assert not promotion.is_transient(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not promotion.is_transient(ValueError("x"))


# -- writes: promote / reject / rollback, and convergence after a crash at any write ------------------------------
def _not_reevaluated(model: object, frame: object, fsv: str) -> dict[str, float]:
    raise AssertionError("these candidates share the champion's logged window: nothing is re-evaluated")


def _setup() -> tuple[FakeMlflowClient, str, str]:
    client = FakeMlflowClient()
    old = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.70"})
    new = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.75"})
    reg = Registry(client, "m", sleep=lambda s: None)
    first = decide({"roc_auc": 0.70}, None)
    promotion.promote(reg, "m", old, build_record(first, "m", old, None, context={"dag_run_id": "r1"}))
    return client, old, new


def _gate(client: FakeMlflowClient, version: str, run: str = "r2") -> dict:
    """What the operator does: short-circuit a recorded promotion, else compare, decide and apply."""
    reg = Registry(client, "m", sleep=lambda s: None)
    champion = reg.champion()
    if champion == version:
        prior = promotion.recorded_decision(reg, version)
        assert prior is not None
        return promotion.promote(reg, "m", version, prior)
    promotion.mark_challenger(reg, version)
    cmp = promotion.compare_on_same_window(reg, version, champion, dataset="m/features",
                                             evaluate=_not_reevaluated)
    d = decide(cmp.candidate, cmp.champion)
    return promotion.apply_decision(reg, "m", version, build_record(d, "m", version, champion, window=cmp.window,
                                                                     comparison=cmp.method,
                                                                     context={"dag_run_id": run}))


def test_promotion_records_everything_and_moves_the_alias_last():
    client, old, new = _setup()
    out = _gate(client, new)
    model = client.models["m"]
    assert out["action"] == "promote" and model.aliases == {"champion": new}
    tags = model.versions[new].tags
    assert tags["loopline.decision"] == "promote" and tags["loopline.previous_champion"] == old
    rec = json.loads(tags["loopline.decision_json"])
    assert rec["candidate_metrics"] == {"roc_auc": 0.75} and rec["champion_metrics"] == {"roc_auc": 0.70}
    assert rec["window"]["window_end"] == "2013-02-04" and rec["context"]["dag_run_id"] == "r2"
    hist = json.loads(model.tags["loopline.champion_history"])
    assert [(h["version"], h["previous"]) for h in hist] == [(old, None), (new, old)]


def test_reject_keeps_the_champion_and_tags_the_candidate():
    client, old, _ = _setup()
    worse = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.60"})
    out = _gate(client, worse)
    assert out["action"] == "reject" and client.models["m"].aliases == {"champion": old, "challenger": worse}
    assert client.models["m"].versions[worse].tags["loopline.decision"] == "reject"


@pytest.mark.parametrize("crash_at", range(1, 9))
def test_a_crash_before_any_write_converges_on_retry(crash_at):
    reference, _, new = _setup()
    _gate(reference, new)
    expected = reference.state()

    client, _, new = _setup()
    client.writes, client.crash_at_write = 0, crash_at
    try:
        _gate(client, new)
    except Crash:
        assert client.models["m"].aliases.get("champion") != new or crash_at > 6
    client.crash_at_write = None
    _gate(client, new)  # the task's retry
    _gate(client, new)  # and one more, for good measure
    assert client.state() == expected


def test_rollback_uses_history_and_a_retry_does_not_roll_back_further():
    client, old, new = _setup()
    _gate(client, new)
    third = client.add_version("m", {**WINDOW, "loopline.val_roc_auc": "0.80"})
    _gate(client, third, run="r3")
    reg = Registry(client, "m", sleep=lambda s: None)
    entry = promotion.rollback(reg, "m", reason="bad", context={"dag_run_id": "rb"})
    assert (entry["version"], entry["previous"]) == (new, third) and reg.champion() == new
    state = client.state()
    promotion.rollback(reg, "m", reason="bad", context={"dag_run_id": "rb"})
    assert client.state() == state
    assert client.models["m"].versions[third].tags["loopline.rolled_back"] == "true"
    promotion.rollback(reg, "m", reason="again", context={"dag_run_id": "rb2"})
    assert reg.champion() == old


def test_rollback_errors():
    client = FakeMlflowClient()
    v = client.add_version("m")
    reg = Registry(client, "m")
    with pytest.raises(PromotionError, match="no champion to roll back"):
        promotion.rollback(reg, "m")
    client.models["m"].aliases["champion"] = v
    with pytest.raises(PromotionError, match="pass the version to roll back to"):
        promotion.rollback(reg, "m")
    with pytest.raises(UnknownModelError):
        promotion.rollback(reg, "m", to_version="9")
    assert promotion.rollback(reg, "m", to_version=v)["reason"].endswith("nothing changed")


def test_history_stays_inside_the_tag_limit():
    client = FakeMlflowClient()
    reg = Registry(client, "m")
    client.add_version("m", WINDOW)
    for i in range(200):
        promotion._append_history(reg, {"id": f"e{i}", "version": "1", "reason": "x" * 40})
    text = client.models["m"].tags["loopline.champion_history"]
    assert len(text) <= promotion.MAX_TAG_CHARS and json.loads(text)[-1]["id"] == "e199"


def test_window_tags_are_required_to_compare():
    client = FakeMlflowClient()
    v = client.add_version("m", {"loopline.val_roc_auc": "0.7"})
    with pytest.raises(PromotionError, match="no data-window tags"):
        promotion.compare_on_same_window(Registry(client, "m"), v, None, dataset="m/features",
                                         evaluate=_not_reevaluated)
