"""The DAG and DAG-run tabs (the page filtered to a DAG's model and a run's days) and the validation result page."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from loopline.store import PartitionStore

from tests.unit.plugins import test_ui as ui

# The page's fixtures (a registry with decisions, two days of drift reports, a signed-in viewer) are test_ui's.
_sources = ui._sources
store, registry_uri, auth, _fresh_caches = ui.store, ui.registry_uri, ui.auth, ui._fresh_caches

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _no_team_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a ``dag_id`` query parameter Airflow's ``requires_access_dag`` authorizes *that* DAG and looks its
    team up in the metadata DB, which a unit test has not: the lookup answers "no team". The api-server test in
    tests/integration runs the real lookup."""
    from airflow.models.dag import DagModel

    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id, session=None: None))


def _client(sources: Any, run_days: Any = None) -> Any:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from loopline_airflow.ui.app import URL_PREFIX, create_app

    root = FastAPI()
    root.mount(URL_PREFIX, create_app(sources, run_days=run_days or (lambda dag_id, run_id: None)))
    return TestClient(root)


def test_days_of_a_run_from_params_partition_events_or_interval() -> None:
    from loopline_airflow.ui.filters import days_of_run

    start = dt.datetime(2024, 5, 3, tzinfo=dt.UTC)
    assert days_of_run({"ds": "2024-05-07"}, None, [], start) == ["2024-05-07"]
    assert days_of_run({"start_ds": "2024-05-01", "end_ds": "2024-05-03"}, None, [], None) == [
        "2024-05-01", "2024-05-02", "2024-05-03"]
    assert days_of_run({"as_of": "2024-04-30", "force": True}, None, [], start) == ["2024-04-30"]
    assert days_of_run({}, "2024-05-02", [], start) == ["2024-05-02"]
    events = [{"ds": "2024-05-02", "uri": "x"}, {"days": ["2024-05-01", "2024-05-02"]}, None]
    assert days_of_run({"ds": None}, None, events, None) == ["2024-05-01", "2024-05-02"]
    assert days_of_run(None, None, [], start) == ["2024-05-03"]
    assert days_of_run(None, "not-a-day", [], None) == []


def test_the_plugin_declares_dag_and_dag_run_tabs_with_the_uis_placeholders() -> None:
    from loopline_airflow.plugin import LooplinePlugin

    views = {v["destination"]: v for v in LooplinePlugin.external_views}
    assert views["dag"]["href"] == "/loopline/?dag_id={DAG_ID}"
    assert views["dag_run"]["href"] == "/loopline/?dag_id={DAG_ID}&run_id={RUN_ID}"
    assert all(v["url_route"] for v in views.values())  # the UI lists a tab only with a url_route


def test_a_dag_tab_shows_only_that_dags_model(store, registry_uri, auth) -> None:
    client = _client(_sources(store, registry_uri))
    headers = {"Authorization": auth["Authorization"]}
    data = client.get("/loopline/api/models", params={"dag_id": "flights.disruption.drift"}, headers=headers).json()
    assert [m["model"] for p in data["projects"] for m in p["models"]] == ["disruption"]
    assert data["filter"]["project"] == "flights" and data["filter"]["model"] == "disruption"
    assert [d["ds"] for d in data["projects"][0]["models"][0]["drift"]["days"]] == ["2013-03-01", "2013-03-02"]
    features = client.get("/loopline/api/models", params={"dag_id": "flights.features"}, headers=headers).json()
    assert sorted(m["model"] for m in features["projects"][0]["models"]) == ["arrival_delay", "disruption"]
    page = client.get("/loopline/", params={"dag_id": "flights.disruption.drift"}, headers=headers)
    assert page.status_code == 200 and "DAG <b>flights.disruption.drift</b>" in page.text
    assert "arrival_delay" not in page.text and 'href="/loopline/">all models</a>' in page.text


def test_a_dag_that_is_not_loopline_s_says_so(store, registry_uri, auth) -> None:
    client = _client(_sources(store, registry_uri))
    headers = {"Authorization": auth["Authorization"]}
    page = client.get("/loopline/", params={"dag_id": "example_bash_operator", "run_id": "manual__1"},
                      headers=headers)
    assert page.status_code == 200 and page.text.count("is not a Loopline DAG") == 1
    assert "Champion" not in page.text
    data = client.get("/loopline/api/models", params={"dag_id": "example_bash_operator"}, headers=headers).json()
    assert data["projects"] == [] and "is not a Loopline DAG" in data["message"]
    assert client.get("/loopline/?dag_id=example_bash_operator").status_code == 401


def test_a_run_tab_shows_that_runs_days(store, registry_uri, auth) -> None:
    asked: list[tuple[str, str]] = []

    def run_days(dag_id: str, run_id: str) -> list[str] | None:
        asked.append((dag_id, run_id))
        return ["2013-03-02"] if run_id == "asset_triggered__1" else None

    client = _client(_sources(store, registry_uri), run_days)
    headers = {"Authorization": auth["Authorization"]}
    params = {"dag_id": "flights.disruption.drift", "run_id": "asset_triggered__1"}
    data = client.get("/loopline/api/models", params=params, headers=headers).json()
    [m] = data["projects"][0]["models"]
    assert [d["ds"] for d in m["drift"]["days"]] == ["2013-03-02"] and m["drift"]["days"][0]["drifted"] is True
    assert asked == [("flights.disruption.drift", "asset_triggered__1")]
    page = client.get("/loopline/", params=params, headers=headers).text
    assert "day(s) <b>2013-03-02</b>" in page and "2013-03-01" not in page
    missing = client.get("/loopline/api/models", params={**params, "run_id": "gone"}, headers=headers).json()
    assert "no run 'gone'" in missing["filter"]["message"]
    day = client.get("/loopline/api/models", params={"dag_id": "flights.disruption.drift", "ds": "2013-03-09"},
                     headers=headers).json()
    assert day["projects"][0]["models"][0]["drift"]["message"] == "no drift report for 2013-03-09"


def test_a_retrain_run_tab_shows_the_decisions_of_that_run(store, registry_uri, auth) -> None:
    client = _client(_sources(store, registry_uri), lambda dag_id, run_id: [])
    headers = {"Authorization": auth["Authorization"]}
    data = client.get("/loopline/api/models", params={"dag_id": "flights.disruption.retrain", "run_id": "r2"},
                      headers=headers).json()
    timeline = data["projects"][0]["models"][0]["registry"]["timeline"]
    assert [(r["version"], r["dag_run_id"]) for r in timeline] == [("2", "r2")]


# -- the validation result of a features day ----------------------------------------------------------------
def test_validation_result_of_a_failed_a_passed_and_an_unknown_day(store: PartitionStore, registry_uri, auth):
    import pandas as pd
    from loopline.validation import ValidationSummary, write_results

    failed = ValidationSummary(
        data_name="flights/features 2013-03-05", suite="flights_features_v1", suite_path="<generated>",
        success=False, statistics={"evaluated_expectations": 12, "successful_expectations": 11}, rows=480,
        failures=[{"column": "distance", "expectation": "expect_column_values_to_be_between",
                   "observed": "3 values < 0"}], full_result={"results": []}, data_docs_html="<html></html>")
    write_results(failed, store, "flights/features", "1", "2013-03-05")
    store.write("flights/features", "1", "2013-03-04", pd.DataFrame({"flight_id": [1, 2, 3]}))
    client = _client(_sources(store, registry_uri))
    headers = {"Authorization": auth["Authorization"]}
    page = client.get("/loopline/validation/flights/2013-03-05.html", headers=headers)
    assert page.status_code == 200 and "<b>Failed</b>" in page.text and "11 of 12 expectations met" in page.text
    assert "<td>distance</td><td>expect_column_values_to_be_between</td><td>3 values &lt; 0</td>" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    raw = client.get("/loopline/validation/flights/2013-03-05.json", headers=headers)
    assert raw.status_code == 200 and json.loads(raw.content)["summary"]["failures"][0]["column"] == "distance"
    passed = client.get("/loopline/validation/flights/2013-03-04.html", headers=headers)
    assert passed.status_code == 200 and "<b>Passed</b>" in passed.text and "3 rows" in passed.text
    assert client.get("/loopline/validation/flights/2013-03-04.json", headers=headers).status_code == 404
    none = client.get("/loopline/validation/flights/2013-03-09.html", headers=headers)
    assert none.status_code == 404 and "no validation result and no features for 2013-03-09" in none.text
    assert client.get("/loopline/validation/nope/2013-03-05.html", headers=headers).status_code == 404
    assert client.get("/loopline/validation/flights/2013-03-05.html").status_code == 401


def test_a_day_older_than_the_pages_window_is_read_for_the_filter(store, registry_uri, auth, monkeypatch) -> None:
    from loopline_airflow.ui import data as page_data

    monkeypatch.setattr(page_data.drift_days, "__defaults__", (1,))  # the page keeps only the newest day
    client = _client(_sources(store, registry_uri))
    headers = {"Authorization": auth["Authorization"]}
    newest = client.get("/loopline/api/models", params={"dag_id": "flights.disruption.drift"}, headers=headers)
    assert [d["ds"] for d in newest.json()["projects"][0]["models"][0]["drift"]["days"]] == ["2013-03-02"]
    old = client.get("/loopline/api/models", params={"dag_id": "flights.disruption.drift", "ds": "2013-03-01"},
                     headers=headers).json()
    [day] = old["projects"][0]["models"][0]["drift"]["days"]
    assert day["ds"] == "2013-03-01" and day["psi"] == {"temp": 0.0412, "distance": 0.0031}
