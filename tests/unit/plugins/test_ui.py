"""The Loopline page: Airflow's auth on every route, and what it shows from a real store and a sqlite registry."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from loopline import promotion, reports
from loopline.project.loader import Found, load_file
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]
FLIGHTS = REPO / "include" / "projects" / "flights" / "project.yaml"
MODEL = "flights.disruption"
DRIFT = "flights/disruption/drift"


# -- fixtures -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def registry_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local sqlite MLflow registry: v1 promoted, v2 promoted over it, v3 rejected; champion v2. Each version has
    its training run and its trigger tag (manual, cron, drift)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    for v, auc, trigger in (("1", 0.61, "manual"), ("2", 0.66, "cron"), ("3", 0.64, "drift")):
        run = client.create_run(experiment_id="0")
        client.create_model_version(MODEL, source=f"file:///nowhere/{v}", run_id=run.info.run_id)
        client.set_model_version_tag(MODEL, v, "loopline.val_roc_auc", str(auc))
        client.set_model_version_tag(MODEL, v, "loopline.trigger", trigger)
    registry = promotion.Registry(client, MODEL)
    first = {"action": "promote", "reason": "no champion yet; guardrails hold", "metric": "roc_auc",
             "candidate_metrics": {"roc_auc": 0.61}, "champion_metrics": None,
             "window": {"validation_start": "2013-01-22", "window_end": "2013-01-28"}}
    promotion.promote(registry, MODEL, "1", first, {"dag_id": "flights.disruption.retrain", "dag_run_id": "r1"})
    second = {"action": "promote", "reason": "better roc_auc by 0.05", "metric": "roc_auc",
              "candidate_metrics": {"roc_auc": 0.66, "brier": 0.18}, "champion_metrics": {"roc_auc": 0.61,
                                                                                         "brier": 0.2},
              "champion_version": "1", "window": {"validation_start": "2013-02-22", "window_end": "2013-02-28"}}
    promotion.promote(registry, MODEL, "2", second, {"dag_id": "flights.disruption.retrain", "dag_run_id": "r2"})
    third = {"action": "reject", "reason": "worse roc_auc by 0.02", "metric": "roc_auc", "champion_version": "2",
             "candidate_metrics": {"roc_auc": 0.64}, "champion_metrics": {"roc_auc": 0.66}}
    promotion.reject(registry, MODEL, "3", third)
    return uri


def _report(ds: str, psi: dict[str, float], drifted: bool) -> dict[str, Any]:
    return {"ds": ds, "model_name": MODEL, "model_version": "2", "feature_set_version": "1",
            "created_at": f"{ds}T23:00:00+00:00", "config": {"psi_bands": [0.1, 0.2]},
            "decision": {"drifted": drifted, "reasons": ["temp psi 0.3127"] if drifted else [], "top_features": []},
            "features": {name: {"psi": value} for name, value in psi.items()}}


@pytest.fixture
def store(tmp_path: Path) -> PartitionStore:
    s = PartitionStore((tmp_path / "store").as_uri())
    for ds, psi, drifted in (("2013-03-01", {"temp": 0.0412, "distance": 0.0031}, False),
                             ("2013-03-02", {"temp": 0.3127, "distance": 0.1534}, True)):
        reports.write_drift_report(s, "1", ds, _report(ds, psi, drifted), html=f"<html><body>report {ds[5:]}</body>",
                                   dataset=DRIFT)
    return s


def _sources(store: PartitionStore | None, registry_uri: str | None) -> Any:
    from loopline_airflow.ui.data import Sources
    from mlflow.tracking import MlflowClient

    def registry(name: str) -> promotion.Registry:
        if registry_uri is None:
            raise ConnectionError("Connection refused: MLflow is down")
        return promotion.Registry(MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri), name,
                                  attempts=1)

    def open_store() -> PartitionStore:
        if store is None:
            raise OSError("bucket gone")
        return store

    return Sources(projects=lambda: [Found(FLIGHTS, project=load_file(FLIGHTS))], store=open_store,
                   registry=registry, tracking_uri=lambda: registry_uri or "sqlite:///unused.db")


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    from loopline_airflow.ui.app import REPORT_HTML_CACHE
    from loopline_airflow.ui.data import REGISTRY_CACHE, REPORT_CACHE

    REPORT_CACHE.clear()
    REGISTRY_CACHE.clear()
    REPORT_HTML_CACHE.clear()
    yield


@pytest.fixture
def auth(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Airflow's SimpleAuthManager with a real signing secret; returns headers of a signed-in viewer.

    The one thing not real: the revoked-token lookup in the metadata DB (there is none in a unit test) answers
    "not revoked". The api-server test in tests/integration covers the real path.
    """
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers import base_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "loopline-unit-test-secret-" + "x" * 64)
    monkeypatch.setattr(base_auth_manager.RevokedToken, "is_revoked", classmethod(lambda cls, jti: False))
    manager = create_auth_manager()
    token = manager.generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))
    return {"Authorization": f"Bearer {token}", "token": token}


def _client(sources: Any) -> TestClient:
    from fastapi import FastAPI
    from loopline_airflow.ui.app import URL_PREFIX, create_app

    root = FastAPI()  # mounted as the api-server mounts plugin apps, so links carry the prefix
    root.mount(URL_PREFIX, create_app(sources))
    return TestClient(root)


# -- auth ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/loopline/", "/loopline/api/models", "/loopline/reports/flights/disruption/"
                                  "2013-03-02.html"])
def test_every_route_needs_a_token(path: str, store: PartitionStore, registry_uri: str, auth: dict[str, str]):
    client = _client(_sources(store, registry_uri))
    assert client.get(path).status_code == 401
    assert client.get(path, headers={"Authorization": "Bearer not-a-jwt"}).status_code == 403
    assert client.get(path, headers={"Authorization": auth["Authorization"]}).status_code == 200
    client.cookies.set("_token", auth["token"])  # what the Airflow UI's browser session sends
    assert client.get(path).status_code == 200


def test_a_user_without_dag_read_access_is_refused(store: PartitionStore, registry_uri: str,
                                                    auth: dict[str, str]):
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="nobody", role=None))
    client = _client(_sources(store, registry_uri))
    assert client.get("/loopline/api/models", headers={"Authorization": f"Bearer {token}"}).status_code == 403


def test_the_plugin_declares_the_app_and_the_nav_entry_without_importing_them():
    code = (
        "import sys\n"
        "from loopline_airflow.plugin import LooplinePlugin\n"
        "p = LooplinePlugin()\n"
        "assert 'fastapi' not in sys.modules and 'airflow.api_fastapi.core_api.security' not in sys.modules\n"
        "app = p.fastapi_apps[0]\n"
        "print('RESULT', p.external_views[0]['destination'], p.external_views[0]['href'], app['url_prefix'],\n"
        "      type(app['app']).__name__, app['name'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    [result] = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert result == ["nav", "/loopline/", "/loopline", "FastAPI", "Loopline"]


# -- content ------------------------------------------------------------------------------------------------------
def test_json_and_page_show_the_champion_the_decisions_and_the_psi(store, registry_uri, auth):
    client = _client(_sources(store, registry_uri))
    headers = {"Authorization": auth["Authorization"]}
    data = client.get("/loopline/api/models", headers=headers).json()
    [project] = data["projects"]
    models = {m["model"]: m for m in project["models"]}
    m = models["disruption"]
    assert m["registered_model"] == MODEL
    assert m["registry"]["champion"]["version"] == "2"
    assert m["registry"]["champion"]["since"]["window_end"] == "2013-02-28"
    assert m["registry"]["champion"]["metrics"] == {"roc_auc": 0.66}
    timeline = m["registry"]["timeline"]
    assert [(r["action"], r["version"], r["previous"]) for r in timeline] == [("promote", "2", "1"),
                                                                                ("promote", "1", None)]
    assert timeline[0]["candidate_metrics"] == {"roc_auc": 0.66, "brier": 0.18}
    assert timeline[0]["champion_metrics"] == {"roc_auc": 0.61, "brier": 0.2}
    assert timeline[0]["reason"] == "better roc_auc by 0.05"
    [rejected] = m["registry"]["rejections"]
    assert rejected["version"] == "3" and rejected["reason"] == "worse roc_auc by 0.02"
    days = m["drift"]["days"]
    assert [d["ds"] for d in days] == ["2013-03-01", "2013-03-02"]
    assert days[1]["psi"] == {"temp": 0.3127, "distance": 0.1534} and days[1]["drifted"] is True
    assert m["drift"]["features"] == ["temp", "distance"]  # the most drifted first
    # the other model of the project has nothing yet, and says so
    other = models["arrival_delay"]
    assert "does not exist yet" in other["registry"]["message"]
    assert other["drift"]["message"].startswith("no drift report yet")

    html = client.get("/loopline/", headers=headers).text
    assert 'Champion: version <span class="champion">2</span>' in html
    assert "better roc_auc by 0.05" in html and "worse roc_auc by 0.02" in html
    cell = re.search(r'<td class="(\w+)" title="temp 2013-03-02: PSI 0.3127"><a href="([^"]+)">0.31</a>', html)
    assert cell is not None and cell.group(1) == "bad"
    assert cell.group(2) == "/loopline/reports/flights/disruption/2013-03-02.html"
    assert 'title="distance 2013-03-02: PSI 0.1534"' in html and 'class="warn" title="distance 2013-03-02' in html
    assert 'class="ok" title="temp 2013-03-01: PSI 0.0412"' in html

    page = client.get(cell.group(2), headers=headers)
    assert page.status_code == 200 and "report 03-02" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    missing = client.get("/loopline/reports/flights/disruption/2013-03-09.html", headers=headers)
    assert missing.status_code == 404 and "no drift report page" in missing.text
    unknown = client.get("/loopline/reports/flights/nope/2013-03-02.html", headers=headers)
    assert unknown.status_code == 404


def test_decisions_link_to_their_mlflow_version_and_run_and_to_their_dag_run(store, registry_uri, auth, monkeypatch):
    from loopline_airflow.ui import data
    from loopline_airflow.ui.data import Sources
    from mlflow.tracking import MlflowClient

    monkeypatch.setattr(data, "mlflow_unreachable", lambda uri, timeout=0: None)  # the server "answers"
    base = _sources(store, registry_uri)
    sources = Sources(projects=base.projects, store=base.store, registry=base.registry,
                      tracking_uri=lambda: "http://admin:s3cret@mlflow.example:5000/")
    client = _client(sources)
    headers = {"Authorization": auth["Authorization"]}
    runs = {v: MlflowClient(registry_uri=registry_uri, tracking_uri=registry_uri).get_model_version(MODEL, v).run_id
            for v in ("1", "2", "3")}
    m = next(m for m in client.get("/loopline/api/models", headers=headers).json()["projects"][0]["models"]
             if m["model"] == "disruption")
    assert m["mlflow_ui"] == "http://mlflow.example:5000"  # no user info
    assert [(r["version"], r["trigger"], r["run_id"]) for r in m["registry"]["timeline"]] == [
        ("2", "cron", runs["2"]), ("1", "manual", runs["1"])]
    assert (m["registry"]["champion"]["trigger"], m["registry"]["champion"]["run_id"]) == ("cron", runs["2"])
    [rejected] = m["registry"]["rejections"]
    assert (rejected["trigger"], rejected["run_id"]) == ("drift", runs["3"])

    html = client.get("/loopline/", headers=headers).text
    ui = "http://mlflow.example:5000"
    for v in ("1", "2", "3"):
        assert f'href="{ui}/#/models/{MODEL}/versions/{v}"' in html, v
        assert f'href="{ui}/#/runs/{runs[v]}"' in html, v
    assert 'href="/dags/flights.disruption.retrain/runs/r2"' in html
    assert "<td>cron</td>" in html and "<td>drift</td>" in html and "trained on cron trigger" in html
    assert "s3cret" not in html


def test_corrupt_report_and_no_champion_still_render(store, tmp_path, auth):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).create_registered_model(MODEL)  # registered, no champion
    folder = Path(store.side_path(reports.REPORTS_KIND, DRIFT, "1", "2013-03-03").removeprefix("file://"))
    folder.mkdir(parents=True)
    (folder / reports.REPORT_JSON).write_text("{not json")
    client = _client(_sources(store, uri))
    headers = {"Authorization": auth["Authorization"]}
    response = client.get("/loopline/api/models", headers=headers)
    assert response.status_code == 200
    m = response.json()["projects"][0]["models"][0]
    assert m["registry"]["champion"] is None and m["registry"]["message"].startswith("no champion yet")
    broken = m["drift"]["days"][-1]
    assert broken["ds"] == "2013-03-03" and broken["error"].startswith("corrupt report")
    html = client.get("/loopline/", headers=headers)
    assert html.status_code == 200
    assert "no champion yet" in html.text and "2013-03-03: corrupt report" in html.text
    assert "0.31" in html.text  # the readable days still show


def test_mlflow_and_store_unreachable_are_said_in_place(auth):
    from loopline_airflow.ui.data import Sources

    base = _sources(None, None)
    sources = Sources(projects=base.projects, store=base.store, registry=base.registry,
                      tracking_uri=lambda: "http://127.0.0.1:9")  # nothing listens on the discard port
    client = _client(sources)
    headers = {"Authorization": auth["Authorization"]}
    response = client.get("/loopline/api/models", headers=headers)
    assert response.status_code == 200
    m = response.json()["projects"][0]["models"][0]
    assert "did not answer" in m["registry"]["message"]
    assert m["drift"]["message"] == "store unreadable: OSError: bucket gone"
    page = client.get("/loopline/", headers=headers)
    assert page.status_code == 200 and "did not answer" in page.text
    assert client.get("/loopline/reports/flights/disruption/2013-03-02.html", headers=headers).status_code == 503


def test_a_broken_project_file_is_listed_with_its_error(tmp_path, auth):
    from loopline.project.loader import ProjectError
    from loopline_airflow.ui.data import Sources

    bad = tmp_path / "bad" / "project.yaml"
    error = ProjectError(bad, [("models", "at least one model")])
    sources = Sources(projects=lambda: [Found(bad, error=error)], store=lambda: PartitionStore(tmp_path.as_uri()),
                      registry=lambda name: pytest.fail("no registry for a broken project"),
                      tracking_uri=lambda: "sqlite:///x.db")
    client = _client(sources)
    data = client.get("/loopline/api/models", headers={"Authorization": auth["Authorization"]}).json()
    assert data["projects"] == [{"project": "bad", "path": str(bad), "models": [], "error": str(error)}]


def test_report_summaries_are_cached_for_a_while(store):
    from loopline_airflow.ui import data

    calls: list[int] = []
    real = reports.read_drift_report

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(reports, "read_drift_report", counting)
        first = data.drift_days(store, "1", DRIFT)
        second = data.drift_days(store, "1", DRIFT)
    assert first == second and len(calls) == 2  # two days, read once each
    assert json.dumps(first, allow_nan=False)  # JSON-safe


def test_ttl_cache_expires_and_stays_bounded():
    from loopline_airflow.ui.data import TTLCache

    now = [0.0]
    cache = TTLCache(maxsize=2, ttl=10, clock=lambda: now[0])
    assert cache.get_or_set("a", lambda: 1) == 1
    assert cache.get_or_set("a", lambda: 2) == 1
    now[0] = 11
    assert cache.get_or_set("a", lambda: 3) == 3
    cache.get_or_set("b", lambda: 1)
    cache.get_or_set("c", lambda: 1)
    assert cache.get_or_set("a", lambda: 4) == 4  # evicted as least recently used


def test_psi_bands_and_non_finite_values():
    from loopline_airflow.ui.data import report_summary
    from loopline_airflow.ui.html import psi_band

    assert [psi_band(v, [0.1, 0.2]) for v in (0.05, 0.1, 0.19, 0.2, None)] == ["ok", "warn", "warn", "bad", "na"]
    summary = report_summary(_report("2013-03-01", {"temp": float("nan")}, False) | {"config": {}})
    assert summary["psi"] == {"temp": None} and summary["psi_bands"] == [0.1, 0.2]


def test_days_without_features_are_listed_with_why_and_link_to_their_validation_result(store, registry_uri, auth):
    """A day whose features failed validation has no partition, so its scoring and drift never start: the page is
    where the UI shows it missing (and a day never built, between built ones)."""
    import pandas as pd
    from loopline.validation import RESULT_JSON, VALIDATION_KIND

    features = "flights/features"
    for ds in ("2013-03-01", "2013-03-02", "2013-03-05"):
        store.write(features, "1", ds, pd.DataFrame({"flight_id": [1, 2], "ds": [ds, ds]}))
    store.write_side_file(VALIDATION_KIND, features, "1", "2013-03-04", RESULT_JSON, '{"summary": {}}')
    # a day that failed once and was built later is not missing
    store.write_side_file(VALIDATION_KIND, features, "1", "2013-03-02", RESULT_JSON, '{"summary": {}}')
    client = _client(_sources(store, registry_uri))
    headers = {"Authorization": auth["Authorization"]}
    [project] = client.get("/loopline/api/models", headers=headers).json()["projects"]
    assert project["missing_days"] == {
        "first": "2013-03-01", "last": "2013-03-05", "total": 2,
        "days": [{"ds": "2013-03-04", "why": "failed validation"}, {"ds": "2013-03-03", "why": "not built"}]}
    page = client.get("/loopline/", headers=headers).text
    assert ("<b>Days without features</b> (2 of 2013-03-01 … 2013-03-05; their scoring and drift runs never "
            'start): 2013-03-04 (<a href="/loopline/validation/flights/2013-03-04.html">failed validation</a>), '
            "2013-03-03 (not built)") in page
    assert client.get("/loopline/validation/flights/2013-03-04.html", headers=headers).status_code == 200
    store.write(features, "1", "2013-03-03", pd.DataFrame({"flight_id": [3], "ds": ["2013-03-03"]}))
    store.write(features, "1", "2013-03-04", pd.DataFrame({"flight_id": [4], "ds": ["2013-03-04"]}))
    page = client.get("/loopline/", headers=headers).text
    assert "Every day 2013-03-01 … 2013-03-05 has features." in page
