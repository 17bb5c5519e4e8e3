"""The Loopline page as headless Chromium renders it: champion, timeline, heatmap and line plots with their numbers.

The page is served by uvicorn on a free loopback port, for a store with known drift reports and a sqlite MLflow
registry with known decisions, and read back with ``chromium --headless --dump-dom``. Airflow's auth dependency
is overridden here (Chromium's command line cannot send a bearer token); ``tests/unit/plugins/test_ui.py`` covers
the auth of every route. Skipped only when no Chromium binary exists (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from loopline import promotion, reports
from loopline.project.loader import Found, load_file
from loopline.store import PartitionStore
from loopline_dev.browser import INSTALL_HINT, chromium, dump_dom

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(chromium() is None, reason=f"no Chromium binary on PATH: {INSTALL_HINT}")]

REPO = Path(__file__).resolve().parents[2]
FLIGHTS = REPO / "include" / "projects" / "flights" / "project.yaml"
MODEL = "flights.disruption"
DRIFT = "flights/disruption/drift"
DAYS = {  # ds: (temp PSI, distance PSI, score PSI, share drifted, labelled roc_auc)
    "2013-03-01": (0.0412, 0.0031, 0.0205, 0.0, 0.6711),
    "2013-03-02": (0.1534, 0.0102, 0.0981, 0.0625, 0.6502),
    "2013-03-03": (0.3127, 0.2245, 0.2419, 0.5, 0.6123),
}


def _registry(uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(MODEL)
    for version, auc, trigger in (("1", 0.61, "manual"), ("2", 0.66, "cron"), ("3", 0.64, "drift")):
        client.create_model_version(MODEL, source=f"file:///nowhere/{version}")
        client.set_model_version_tag(MODEL, version, "loopline.val_roc_auc", str(auc))
        client.set_model_version_tag(MODEL, version, "loopline.trigger", trigger)
    registry = promotion.Registry(client, MODEL)
    promotion.promote(registry, MODEL, "1", {
        "action": "promote", "reason": "no champion yet; guardrails hold", "metric": "roc_auc",
        "candidate_metrics": {"roc_auc": 0.61}, "window": {"validation_start": "2013-01-22",
                                                           "window_end": "2013-01-28"}},
        {"dag_id": "flights.disruption.retrain", "dag_run_id": "scheduled__2013-01-28"})
    promotion.promote(registry, MODEL, "2", {
        "action": "promote", "reason": "better roc_auc by 0.05", "metric": "roc_auc", "champion_version": "1",
        "candidate_metrics": {"roc_auc": 0.66}, "champion_metrics": {"roc_auc": 0.61},
        "window": {"validation_start": "2013-02-22", "window_end": "2013-02-28"}},
        {"dag_id": "flights.disruption.retrain", "dag_run_id": "asset_triggered__2013-02-28"})
    promotion.reject(registry, MODEL, "3", {
        "action": "reject", "reason": "worse roc_auc by 0.02", "metric": "roc_auc", "champion_version": "2",
        "candidate_metrics": {"roc_auc": 0.64}, "champion_metrics": {"roc_auc": 0.66}})


def _store(root: Path) -> PartitionStore:
    store = PartitionStore(root.as_uri())
    for ds, (temp, distance, score, share, auc) in DAYS.items():
        body = {"ds": ds, "model_name": MODEL, "model_version": "2", "feature_set_version": "1",
                "created_at": f"{ds}T23:00:00+00:00", "config": {"psi_bands": [0.1, 0.2], "drift_share": 0.5},
                "decision": {"drifted": share >= 0.5, "reasons": ["2 of 4 features drifted"] if share >= 0.5 else [],
                             "top_features": [], "share_drifted": share,
                             "prediction_drift": {"column": "score", "psi": score}},
                "features": {"temp": {"psi": temp}, "distance": {"psi": distance}, "score": {"psi": score}},
                "performance": {"metric": "roc_auc", "higher_is_better": True, "validation": 0.66, "value": auc,
                                "rows": 900, "days": [], "note": None}}
        reports.write_drift_report(store, "1", ds, body, html=f"<html><body>report {ds}</body></html>",
                                   dataset=DRIFT)
    return store


@pytest.fixture(scope="module")
def page_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn
    from fastapi import FastAPI
    from loopline_airflow.ui import data
    from loopline_airflow.ui.app import URL_PREFIX, create_app
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("render")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    _registry(uri)
    store = _store(tmp / "store")
    project = load_file(FLIGHTS)
    sources = data.Sources(
        projects=lambda: [Found(FLIGHTS, project=project)], store=lambda: store,
        registry=lambda name: promotion.Registry(MlflowClient(tracking_uri=uri, registry_uri=uri), name, attempts=1),
        tracking_uri=lambda: uri)
    data.REPORT_CACHE.clear()
    data.REGISTRY_CACHE.clear()
    app = create_app(sources)
    for dependency in app.router.dependencies:  # see the module docstring
        app.dependency_overrides[dependency.dependency] = lambda: None
    root = FastAPI()
    root.mount(URL_PREFIX, app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(root, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start serving the page within 60 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}{URL_PREFIX}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


class _Cells(HTMLParser):
    """Every element's text with its tag, class and title attribute, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[dict[str, Any]] = []
        self.found: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = {"tag": tag, **{k: v or "" for k, v in attrs}, "text": ""}
        self.found.append(node)
        if tag not in ("br", "line", "circle", "polyline", "meta", "input", "img"):
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            node = self.stack.pop()
            if node["tag"] == tag:
                break

    def handle_data(self, text: str) -> None:
        for node in self.stack:
            node["text"] += text


def test_chromium_renders_the_champion_the_timeline_the_heatmap_and_the_plots(page_url: str) -> None:
    dom = dump_dom(page_url)
    parser = _Cells()
    parser.feed(dom)
    nodes = parser.found
    champion = [n for n in nodes if n.get("class") == "champion"]
    assert [n["text"] for n in champion] == ["2"]
    paragraph = next(n for n in nodes if n["tag"] == "p" and n["text"].startswith("Champion: version 2"))
    assert "metrics: roc_auc=0.6600" in paragraph["text"]
    assert "promote by flights.disruption.retrain run asset_triggered__2013-02-28, data through 2013-02-28" \
        in paragraph["text"]

    rows = [n["text"] for n in nodes if n["tag"] == "tr" and n["text"].startswith("promote")]
    assert len(rows) == 2
    # action, version, previous, trigger, metric, candidate, champion, ...
    assert rows[0].startswith("promote21cronroc_auc0.66000.6100") and "better roc_auc by 0.05" in rows[0]
    assert rows[1].startswith("promote1manualroc_auc0.6100") and "no champion yet; guardrails hold" in rows[1]
    rejected = [n["text"] for n in nodes if n["tag"] == "tr" and "worse roc_auc by 0.02" in n["text"]]
    assert len(rejected) == 1 and rejected[0].startswith("3") and "drift2worse roc_auc" in rejected[0]

    cells = {n["title"]: (n["class"], n["text"]) for n in nodes if n["tag"] == "td" and "PSI" in n.get("title", "")}
    assert cells["temp 2013-03-03: PSI 0.3127"] == ("bad", "0.31")
    assert cells["temp 2013-03-02: PSI 0.1534"] == ("warn", "0.15")
    assert cells["distance 2013-03-01: PSI 0.0031"] == ("ok", "0.00")
    assert cells["score 2013-03-03: PSI 0.2419"] == ("bad", "0.24")
    assert len(cells) == 9
    links = {n["href"] for n in nodes if n["tag"] == "a" and "/reports/" in n.get("href", "")}
    assert links == {f"/loopline/reports/flights/disruption/{ds}.html" for ds in DAYS}

    charts = {n["class"].split()[-1]: n for n in nodes if n["tag"] == "div" and n.get("class", "").startswith("chart ")}
    assert set(charts) == {"prediction", "share", "performance"}
    start = nodes.index(charts["prediction"])
    points: dict[str, list[str]] = {"prediction": [], "share": [], "performance": []}
    current = None
    for node in nodes[start:]:
        if node in charts.values():
            current = node["class"].split()[-1]
        elif node["tag"] == "title" and current and re.fullmatch(r"2013-03-0\d: [\d.]+", node["text"]):
            points[current].append(node["text"])
    assert points["prediction"] == ["2013-03-01: 0.0205", "2013-03-02: 0.0981", "2013-03-03: 0.2419"]
    assert points["share"] == ["2013-03-01: 0.0000", "2013-03-02: 0.0625", "2013-03-03: 0.5000"]
    assert points["performance"] == ["2013-03-01: 0.6711", "2013-03-02: 0.6502", "2013-03-03: 0.6123"]
    assert "roc_auc (higher is better)" in charts["performance"]["text"]

    report = dump_dom(page_url.rstrip("/") + "/reports/flights/disruption/2013-03-03.html")
    assert "report 2013-03-03" in report
