"""End to end on the real scheduler: unshifted days fire no retrain; a known shift fires exactly the drift path.

Starts Airflow's own api-server, scheduler, dag-processor and triggerer (LocalExecutor, SQLite) and a real
``mlflow server`` on loopback, drives them over the REST API as a user would, and stops them after.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from loopline.airflow_client import AirflowAPIError, AirflowClient
from loopline.demo import DAGS, settle, wait_for_dags
from loopline.reports import list_drift_reports
from loopline.settings import Settings
from loopline.sources import RAW_FLIGHTS, RAW_VERSION, RAW_WEATHER, NycFlights13Source, land_day
from loopline.stack import Stack, StackConfig
from loopline.store import PartitionStore
from loopline.tracking import CHAMPION, client, resolve_alias

pytestmark = pytest.mark.e2e
FIRST, AS_OF = dt.date(2013, 1, 1), dt.date(2013, 1, 31)
CALM_END = dt.date(2013, 2, 10)
SHIFTED = [dt.date(2013, 2, 11), dt.date(2013, 2, 12), dt.date(2013, 2, 13)]
POLL = 3


def shift_day(store: PartitionStore, day: dt.date) -> None:
    """A known, valid but far-from-January shift of eight features (every value stays inside the GX suites'
    ranges, so validation passes and only drift can notice): 8 of 15 features ≥ the default share of 0.5."""
    f = store.read(RAW_FLIGHTS, RAW_VERSION, day)
    store.write(RAW_FLIGHTS, RAW_VERSION, day, f.assign(distance=f["distance"] + 500))
    w = store.read(RAW_WEATHER, RAW_VERSION, day)
    w = w.assign(temp=w["temp"] + 50, dewp=w["dewp"] + 45, wind_speed=w["wind_speed"] + 25,
                 pressure=w["pressure"] - 40, humid=w["humid"] * 0.3, visib=w["visib"] * 0.2,
                 precip=w["precip"] + 1.0)
    store.write(RAW_WEATHER, RAW_VERSION, day, w)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("e2e")
    settings = Settings(home=home, model_name="loopline_e2e", train_window_days=28, validation_days=7,
                        drift_window_days=14, retrain_cooldown_days=3)
    s = Stack(StackConfig(home=home, parallelism=3,
                          extra_env={"LOOPLINE_RAW_SOURCE": "store", "LOOPLINE_DRIFT_POLL_SECONDS": str(POLL)}),
              settings)
    store = PartitionStore(settings.store_root)
    source = NycFlights13Source()
    for i in range((SHIFTED[-1] - FIRST).days + 1):
        land_day(source, store, FIRST + dt.timedelta(days=i))
    with s:
        yield s


@pytest.fixture(scope="module")
def api(stack: Stack) -> AirflowClient:
    c = AirflowClient(stack.config.api_url, "admin", stack.admin_password())
    wait_for_dags(c)
    for dag_id in DAGS:
        c.set_paused(dag_id, False)
    return c


def retrain_runs(api: AirflowClient) -> list[dict]:
    return api.dag_runs("loopline_retrain")


def _plan(api: AirflowClient, run_id: str) -> dict | None:
    """The plan XCom of a retrain run; None when the plan was skipped (cooldown, stale event)."""
    try:
        return dict(api.xcom("loopline_retrain", run_id, "plan"))
    except AirflowAPIError as err:
        if err.status == 404:
            return None
        raise


def test_api_refuses_calls_without_a_token(stack: Stack) -> None:
    for path in ("/api/v2/dags", "/api/v2/backfills?dag_id=loopline_feature_backfill", "/api/v2/assets/events"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{stack.config.api_url}{path}", timeout=10)
        assert err.value.code == 401, path
    forged = AirflowClient(stack.config.api_url, token="not-a-token", retries=0)
    with pytest.raises(AirflowAPIError) as bad:
        forged.dags()
    assert bad.value.status in {401, 403}


def test_unshifted_days_trigger_no_retrain(stack: Stack, api: AirflowClient) -> None:
    bf = stack.create_backfill(api, "loopline_feature_backfill", FIRST.isoformat(), CALM_END.isoformat(),
                               max_active_runs=3)
    assert api.wait_backfill(int(bf["id"]), timeout=900)["completed_at"]
    settle(api, quiet_seconds=5)
    run = api.trigger("loopline_retrain", conf={"as_of": AS_OF.isoformat(), "window_days": 28})
    assert api.wait_run("loopline_retrain", run["dag_run_id"], timeout=600)["state"] == "success"
    assert resolve_alias(stack.settings, CHAMPION) == "1"
    api.trigger("loopline_batch_scoring", conf={"start_ds": "2013-01-18", "end_ds": CALM_END.isoformat()})
    settle(api, quiet_seconds=POLL * 4)
    store = PartitionStore(stack.settings.store_root)
    reports = list_drift_reports(store, "1")
    assert len(reports) == 24
    assert [r["ds"] for r in reports if r["decision"]["drifted"]] == []
    assert {r["run_type"] for r in retrain_runs(api)} <= {"manual", "scheduled"}
    assert resolve_alias(stack.settings, CHAMPION) == "1"


def test_known_shift_fires_a_drift_retrain(stack: Stack, api: AirflowClient) -> None:
    store = PartitionStore(stack.settings.store_root)
    for day in SHIFTED:
        shift_day(store, day)
    bf = stack.create_backfill(api, "loopline_feature_backfill", SHIFTED[0].isoformat(), SHIFTED[-1].isoformat(),
                               max_active_runs=3)
    api.wait_backfill(int(bf["id"]), timeout=600)
    deadline = time.monotonic() + 600
    drift_runs: list[dict] = []
    while time.monotonic() < deadline and not drift_runs:
        drift_runs = [r for r in retrain_runs(api) if r["run_type"] == "asset_triggered"]
        time.sleep(3)
    assert drift_runs, "no asset-triggered retrain after the shifted days"
    settle(api, quiet_seconds=POLL * 4)
    drifted = [r for r in list_drift_reports(store, "1") if r["decision"]["drifted"]]
    assert drifted and {r["ds"] for r in drifted} <= {d.isoformat() for d in SHIFTED}
    top = {name for r in drifted for name, _ in r["decision"]["top_features"]}
    assert top & {"temp", "dewp", "pressure", "wind_speed", "humid", "visib", "precip", "distance"}
    finished = [api.dag_run("loopline_retrain", r["dag_run_id"]) for r in drift_runs]
    assert all(r["state"] == "success" for r in finished), finished
    trained = [p for p in (_plan(api, r["dag_run_id"]) for r in drift_runs) if p]
    # A burst of three drifted days yields one retrain; the rest are skipped by the cooldown.
    assert len(trained) == 1 and trained[0]["trigger"] == "drift" and trained[0]["as_of"] in {
        d.isoformat() for d in SHIFTED}
    mv = client(stack.settings).get_model_version("loopline_e2e", "2")
    assert mv.tags["loopline.trigger"] == "drift"
    assert mv.tags["loopline.decision"] in {"promote", "reject"}
    champion = resolve_alias(stack.settings, CHAMPION)
    assert champion == ("2" if mv.tags["loopline.decision"] == "promote" else "1")
