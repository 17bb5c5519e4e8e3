"""``loopline_dev.rest.AirflowClient`` against a real ``airflow api-server`` (SQLite, SimpleAuthManager, loopback).

A throw-away Airflow home holds one small DAG: ``airflow dags test`` runs it once (so a finished run, its task
instances, an XCom and an asset event exist), then the api-server starts and every call of the client is made
against it: the token from ``POST /auth/token``, the DAG list, pausing, triggering, run and task-instance
listings and counts, the XCom, a task's log, a backfill (paused, unpaused, listed), the asset events and the
queued ones, the one private UI route still called raw, clearing runs — each answer deserialized by
``apache-airflow-client`` (the log read as JSON). No scheduler runs, so triggered, backfilled and cleared runs
stay queued.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loopline_dev.rest import AirflowAPIError, AirflowClient

from tests.support.airflow_api import ASSET, DAG_ID, api_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real api-server on a free loopback port; yields its URL and the admin password."""
    with api_server(tmp_path_factory.mktemp("rest")) as (url, password):
        yield url, password


@pytest.fixture(scope="module")
def api(airflow: tuple[str, str]) -> AirflowClient:
    url, password = airflow
    return AirflowClient(url, "admin", password, timeout=60, retries=3)


def test_a_wrong_password_gets_no_token(airflow: tuple[str, str]) -> None:
    with pytest.raises(AirflowAPIError) as err:
        AirflowClient(airflow[0], "admin", "not-the-password", retries=0).dags()
    assert err.value.status == 401 and "/auth/token" in str(err.value)


def test_a_forged_token_is_refused(airflow: tuple[str, str]) -> None:
    with pytest.raises(AirflowAPIError) as err:
        AirflowClient(airflow[0], token="not-a-token", retries=0).dags()
    assert err.value.status in {401, 403} and "GET /api/v2/dags" in str(err.value)


def test_dags_pause_and_the_finished_run(api: AirflowClient) -> None:
    assert api.token().count(".") == 2  # a JWT
    [dag] = [d for d in api.dags() if d["dag_id"] == DAG_ID]
    assert dag["is_paused"] is True and dag["tags"][0]["name"] == "probe"
    assert api.set_paused(DAG_ID, False)["is_paused"] is False
    assert next(d for d in api.dags() if d["dag_id"] == DAG_ID)["is_paused"] is False

    [done] = api.dag_runs(DAG_ID, state=["success"])
    assert done["logical_date"].startswith("2024-01-01T00:00:00") and done["run_type"] == "manual"
    assert api.wait_run(DAG_ID, done["dag_run_id"], timeout=5)["state"] == "success"
    [ti] = api.task_instances(DAG_ID, done["dag_run_id"])
    assert (ti["task_id"], ti["state"], ti["try_number"]) == ("answer", "success", 1)
    assert [t["task_id"] for t in api.all_task_instances(DAG_ID, state="success")] == ["answer"]
    assert api.xcom(DAG_ID, done["dag_run_id"], "answer") == {"answer": 42, "day": "2024-01-01"}

    assert api.count_dag_runs(DAG_ID, state=["success"]) == 1
    assert api.count_dag_runs("~", dag_id_pattern="rest_probe", state=["success"]) == 1
    assert api.count_dag_runs("~", dag_id_pattern="no_such_dag") == 0
    assert api.count_queued_asset_events(DAG_ID) == 0
    log = api.task_log(DAG_ID, done["dag_run_id"], "answer", 1)
    assert isinstance(log["content"], list) and log["content"] and "continuation_token" in log
    # The one private UI route the demo still calls raw (the client has no method for /ui/...).
    assert api.request("GET", "/ui/partitioned_dag_runs",
                       params={"has_created_dag_run_id": "false"})["partitioned_dag_runs"] == []

    [event] = api.asset_events(ASSET)
    assert event["source_run_id"] == done["dag_run_id"] and event["source_task_id"] == "answer"
    assert api.asset_events("no_such_asset") == []


def test_trigger_and_read_back_a_run(api: AirflowClient) -> None:
    run = api.trigger(DAG_ID, conf={"as_of": "2024-01-02"}, run_id="manual__rest_probe")
    assert (run["dag_run_id"], run["conf"], run["state"]) == ("manual__rest_probe", {"as_of": "2024-01-02"}, "queued")
    assert api.dag_run(DAG_ID, "manual__rest_probe")["conf"] == {"as_of": "2024-01-02"}
    assert "manual__rest_probe" in {r["dag_run_id"] for r in api.dag_runs(DAG_ID, state=["queued"])}
    with pytest.raises(AirflowAPIError) as err:  # the same run id again, on the first try: a real conflict
        api.trigger(DAG_ID, run_id="manual__rest_probe")
    assert err.value.status == 409
    with pytest.raises(TimeoutError):
        api.wait_run(DAG_ID, "manual__rest_probe", timeout=0.1, poll=0.05)  # no scheduler: it stays queued


def test_a_backfill_is_created_and_read_back(api: AirflowClient) -> None:
    bf = api.create_backfill(DAG_ID, "2024-01-03", "2024-01-05", max_active_runs=2)
    assert (bf["dag_id"], bf["max_active_runs"], bf["completed_at"]) == (DAG_ID, 2, None)
    assert api.backfill(int(bf["id"]))["from_date"].startswith("2024-01-03")
    runs = api.dag_runs(DAG_ID, run_type=["backfill"], logical_date_gte="2024-01-03T00:00:00Z")
    assert sorted(r["logical_date"][:10] for r in runs) == ["2024-01-03", "2024-01-04", "2024-01-05"]
    assert api.pause_backfill(int(bf["id"]))["is_paused"] is True
    assert [(b["id"], b["is_paused"]) for b in api.backfills(DAG_ID)] == [(bf["id"], True)]
    assert api.unpause_backfill(int(bf["id"]))["is_paused"] is False
    assert api.backfills("no_such_dag") == []


def test_clearing_runs_queues_them_again(api: AirflowClient) -> None:
    """Last in the module: it sets the finished run back to queued (no scheduler runs it again)."""
    [done] = api.dag_runs(DAG_ID, state=["success"])
    rid = done["dag_run_id"]
    assert ":" in rid and "+" in rid  # the client quotes the run id in the path
    answer = api.clear_dag_runs(DAG_ID, [rid])
    assert [r["dag_run_id"] for r in answer["dag_runs"]] == [rid]
    assert api.dag_run(DAG_ID, rid)["state"] == "queued"
    again = api.clear_dag_run(DAG_ID, rid)
    assert (again["dag_run_id"], again["state"]) == (rid, "queued")
