"""The promotion gate and the rollback against a real MLflow server with real models."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest
from loopline import promotion
from loopline_airflow.exceptions import LooplineConfigurationError, LooplineRegistryUnavailable
from loopline_airflow.operators.registry import MLflowModelPromotionOperator, MLflowModelRollbackOperator

from tests.integration.conftest import MODEL, PROJECT, RegistryHelper, task_context
from tests.support.mlflow_server import free_port

pytestmark = pytest.mark.integration


def gate(registry: RegistryHelper, conn: str, version: str, store_root: str, **kwargs: object
         ) -> MLflowModelPromotionOperator:
    return MLflowModelPromotionOperator(
        task_id="promote", project=PROJECT, project_model=MODEL,
        model_name=registry.name, candidate_version=version, mlflow_conn_id=conn,
        store_root=store_root, retry_backoff_seconds=0.1, **kwargs,
    )


def test_first_candidate_becomes_champion(registry, mlflow_conn, feature_store):
    v = registry.add("weak")
    out = gate(registry, mlflow_conn, v, feature_store.root).execute(task_context())
    assert out["action"] == "promote" and "no champion" in out["reason"]
    assert registry.champion() == v
    tags = registry.tags(v)
    assert tags["loopline.decision"] == "promote" and tags["loopline.previous_champion"] == ""
    assert json.loads(tags["loopline.decision_json"])["context"]["dag_run_id"] == "manual__2013-02-05"
    history = json.loads(registry.client.get_registered_model(registry.name).tags["loopline.champion_history"])
    assert [h["version"] for h in history] == [v]
    assert json.loads(json.dumps(out)) == out  # the XCom is plain JSON


def test_better_candidate_replaces_champion_and_records_it(registry, mlflow_conn, feature_store):
    old, new = registry.add("weak"), registry.add("strong")
    gate(registry, mlflow_conn, old, feature_store.root).execute(task_context("run1"))
    out = gate(registry, mlflow_conn, new, feature_store.root, min_improvement=0.005).execute(task_context("run2"))
    assert out["action"] == "promote" and out["comparison"] == "logged"
    assert out["champion_version"] == old and out["delta"] > 0.005
    assert out["candidate_metrics"]["roc_auc"] > out["champion_metrics"]["roc_auc"]
    assert out["window"]["validation_start"] == "2013-01-29" and out["window"]["window_end"] == "2013-02-04"
    assert registry.champion() == new
    assert registry.tags(new)["loopline.previous_champion"] == old
    aliases = registry.client.get_registered_model(registry.name).aliases
    assert "challenger" not in aliases  # the promoted challenger gave the alias up


def test_worse_candidate_is_rejected_and_champion_untouched(registry, mlflow_conn, feature_store):
    champ, cand = registry.add("strong"), registry.add("weak")
    gate(registry, mlflow_conn, champ, feature_store.root).execute(task_context("run1"))
    out = gate(registry, mlflow_conn, cand, feature_store.root, force=True).execute(task_context("run2"))
    assert out["action"] == "reject" and "worse" in out["reason"]  # force never promotes a worse model
    assert registry.champion() == champ
    tags = registry.tags(cand)
    assert tags["loopline.decision"] == "reject" and "worse" in tags["loopline.decision_reason"]
    assert registry.client.get_registered_model(registry.name).aliases["challenger"] == cand


def test_equal_candidate_is_rejected_unless_forced(registry, mlflow_conn, feature_store):
    champ, twin = registry.add("strong"), registry.add("strong")
    gate(registry, mlflow_conn, champ, feature_store.root).execute(task_context("run1"))
    out = gate(registry, mlflow_conn, twin, feature_store.root).execute(task_context("run2"))
    assert out["action"] == "reject" and "no improvement" in out["reason"] and out["delta"] == 0
    assert registry.champion() == champ
    forced = gate(registry, mlflow_conn, twin, feature_store.root, force="True").execute(task_context("run3"))
    assert forced["action"] == "promote" and forced["forced"] is True
    assert registry.champion() == twin


def test_guardrail_failure_rejects_even_without_champion(registry, mlflow_conn, feature_store):
    v = registry.add("weak")
    out = gate(registry, mlflow_conn, v, feature_store.root, guardrails={"roc_auc": (0.99, None)}).execute(
        task_context())
    assert out["action"] == "reject" and "guardrail failed: roc_auc" in out["reason"]
    assert registry.champion() is None


def test_failed_validation_is_never_promoted(registry, mlflow_conn, feature_store):
    v = registry.add("strong")
    out = gate(registry, mlflow_conn, v, feature_store.root,
               validation={"success": False, "failures": []}).execute(task_context())
    assert out["action"] == "reject" and "validation" in out["reason"]
    assert registry.champion() is None


def test_different_windows_are_compared_on_the_candidates_days(registry, mlflow_conn, feature_store):
    champ, cand = registry.add("strong_early"), registry.add("strong")
    gate(registry, mlflow_conn, champ, feature_store.root).execute(task_context("run1"))
    out = gate(registry, mlflow_conn, cand, feature_store.root).execute(task_context("run2"))
    assert out["comparison"] == "re-evaluated"
    assert out["window"]["validation_start"] == "2013-01-29" and out["window"]["rows"] > 1000
    logged_champ = float(registry.tags(champ)["loopline.val_roc_auc"])
    assert out["champion_metrics"]["roc_auc"] != pytest.approx(logged_champ)  # measured on other days
    # the candidate's re-evaluation reproduces what it logged on the same days
    assert out["candidate_metrics"]["roc_auc"] == pytest.approx(float(registry.tags(cand)["loopline.val_roc_auc"]))
    assert registry.champion() == (cand if out["action"] == "promote" else champ)


def test_retry_is_idempotent_even_after_a_crash_before_the_alias_move(registry, mlflow_conn, feature_store,
                                                                       monkeypatch):
    old, new = registry.add("weak"), registry.add("strong")
    gate(registry, mlflow_conn, old, feature_store.root).execute(task_context("run1"))

    real_set_alias = promotion.Registry.set_alias

    def crash_on_champion(self, alias, version):
        if alias == "champion":
            raise RuntimeError("worker killed")
        return real_set_alias(self, alias, version)

    monkeypatch.setattr(promotion.Registry, "set_alias", crash_on_champion)
    with pytest.raises(RuntimeError, match="worker killed"):
        gate(registry, mlflow_conn, new, feature_store.root).execute(task_context("run2"))
    assert registry.champion() == old  # tags were written, serving did not switch
    monkeypatch.setattr(promotion.Registry, "set_alias", real_set_alias)

    first = gate(registry, mlflow_conn, new, feature_store.root).execute(task_context("run2"))
    after_first = registry.snapshot()
    again = gate(registry, mlflow_conn, new, feature_store.root).execute(task_context("run2"))
    assert registry.snapshot() == after_first
    assert first["action"] == again["action"] == "promote" and registry.champion() == new
    assert again["champion_version"] == old  # the recorded decision, not a comparison of new with itself
    history = json.loads(after_first["tags"]["loopline.champion_history"])
    assert [h["version"] for h in history] == [old, new]


def test_rollback_restores_previous_champion_once(registry, mlflow_conn, feature_store):
    old, new = registry.add("weak"), registry.add("strong")
    gate(registry, mlflow_conn, old, feature_store.root).execute(task_context("run1"))
    gate(registry, mlflow_conn, new, feature_store.root).execute(task_context("run2"))
    rollback = MLflowModelRollbackOperator(task_id="rollback", model_name=registry.name, mlflow_conn_id=mlflow_conn,
                                           reason="bad scores in production")
    out = rollback.execute(task_context("rb1", task_id="rollback"))
    assert out["version"] == old and out["previous"] == new
    assert registry.champion() == old
    assert registry.tags(new)["loopline.rolled_back"] == "true"
    state = registry.snapshot()
    rollback.execute(task_context("rb1", task_id="rollback"))  # a retry of the same run
    assert registry.snapshot() == state
    explicit = MLflowModelRollbackOperator(task_id="rollback", model_name=registry.name, to_version=new,
                                           mlflow_conn_id=mlflow_conn, reason="fixed upstream")
    assert explicit.execute(task_context("rb2"))["version"] == new and registry.champion() == new


def test_rollback_without_history_says_what_to_do(registry, mlflow_conn):
    v = registry.add("weak")
    registry.client.set_registered_model_alias(registry.name, "champion", v)  # set by hand, no history
    op = MLflowModelRollbackOperator(task_id="rollback", model_name=registry.name, mlflow_conn_id=mlflow_conn)
    with pytest.raises(LooplineConfigurationError, match="pass the version to roll back to"):
        op.execute(task_context())


@pytest.mark.parametrize(
    ("model", "version", "kwargs", "match"),
    [
        ("missing_model", "1", {}, "registered model 'missing_model' does not exist"),
        (None, "99", {}, "version '99' of registered model"),
        (None, "", {}, "candidate_version is empty"),
        (None, "1", {"metric": "f1"}, "no value for metric 'f1'"),
    ],
)
def test_bad_input_fails_with_a_message_and_no_change(registry, mlflow_conn, feature_store, model, version,
                                                      kwargs, match):
    registry.add("weak")
    before = registry.snapshot()
    op = MLflowModelPromotionOperator(task_id="promote", project=PROJECT, project_model=MODEL,
                                      model_name=model or registry.name, candidate_version=version,
                                      mlflow_conn_id=mlflow_conn, store_root=feature_store.root, **kwargs)
    with pytest.raises(LooplineConfigurationError, match=match):
        op.execute(task_context())
    if kwargs.get("metric") is None:
        assert registry.snapshot() == before


def test_candidate_without_window_tags_is_refused(registry, mlflow_conn, feature_store):
    v = registry.add("weak")
    registry.client.delete_model_version_tag(registry.name, v, "loopline.window_end")
    with pytest.raises(LooplineConfigurationError, match="no data-window tags"):
        gate(registry, mlflow_conn, v, feature_store.root).execute(task_context())


@pytest.fixture
def fast_mlflow_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")


def test_server_down_fails_clearly_after_retries(monkeypatch, fast_mlflow_failures, feature_store):
    port = free_port()  # nothing listens there
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_DOWN", f'{{"conn_type": "mlflow", "host": "http://127.0.0.1:{port}"}}')
    op = MLflowModelPromotionOperator(task_id="promote", project=PROJECT, project_model=MODEL, model_name="m",
                                      candidate_version="1", mlflow_conn_id="mlflow_down", retry_backoff_seconds=0.05,
                                      store_root=feature_store.root)
    with pytest.raises(LooplineRegistryUnavailable, match=r"did not answer .*3 attempts.*retry is safe"):
        op.execute(task_context())


class _Always503(http.server.BaseHTTPRequestHandler):
    calls = 0

    def _answer(self) -> None:
        type(self).calls += 1
        body = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "maintenance"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server_503() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always503)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_5xx_is_retried_then_fails_clearly(monkeypatch, fast_mlflow_failures, server_503, feature_store):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_503", f'{{"conn_type": "mlflow", "host": "{server_503}"}}')
    _Always503.calls = 0
    op = MLflowModelRollbackOperator(task_id="rollback", model_name="m", mlflow_conn_id="mlflow_503",
                                     retry_backoff_seconds=0.05)
    with pytest.raises(LooplineRegistryUnavailable, match="did not answer"):
        op.execute(task_context())
    assert _Always503.calls >= 3
