"""``loopline_dev.rest.AirflowClient`` against a real ``airflow api-server`` (SQLite, SimpleAuthManager, loopback).

A throw-away Airflow home holds one small DAG: ``airflow dags test`` runs it once (so a finished run, its task
instances, an XCom and an asset event exist), then the api-server starts and every call of the client is made
against it: the token from ``POST /auth/token``, the DAG list, pausing, triggering, run and task-instance
listings, the XCom, a backfill, the asset events — each answer deserialized by ``apache-airflow-client``.
No scheduler runs, so the triggered run and the backfill's runs stay queued.
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
    # The raw call the demo uses to hold a backfill, through the same client.
    assert api.request("PUT", f"/api/v2/backfills/{bf['id']}/pause")["is_paused"] is True
