"""The Loopline page's line plots (prediction drift, share of drifted features, labelled performance) and its
report cache keyed on each report file's identity."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loopline import reports
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit

DRIFT = "flights/disruption/drift"


def _report(ds: str, *, score_psi: float | None, share: float, perf: float | None, validation: float = 0.7,
            old_style: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ds": ds, "model_name": "flights.disruption", "model_version": "2", "feature_set_version": "1",
        "created_at": f"{ds}T23:00:00+00:00", "config": {"psi_bands": [0.1, 0.25], "drift_share": 0.5},
        "decision": {"drifted": share >= 0.5, "reasons": [], "top_features": [], "share_drifted": share,
                     "prediction_drift": None if score_psi is None else {"column": "score", "psi": score_psi}},
        "features": {"temp": {"psi": 0.05}},
    }
    if old_style:  # a report written before the performance block: the decay verdict only
        body["decision"]["performance_decay"] = None if perf is None else {
            "metric": "roc_auc", "reference": validation, "current": perf, "drop": validation - perf}
    else:
        body["performance"] = {"metric": "roc_auc", "higher_is_better": True, "validation": validation,
                               "value": perf, "rows": 1200, "days": [], "note": None if perf is not None else
                               "no labelled row scored by this version before the day in the window"}
    return body


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    from loopline_airflow.ui.data import REGISTRY_CACHE, REPORT_CACHE

    REPORT_CACHE.clear()
    REGISTRY_CACHE.clear()
    yield


@pytest.fixture
def store(tmp_path: Path) -> PartitionStore:
    s = PartitionStore((tmp_path / "store").as_uri())
    rows = [("2013-03-01", 0.02, 0.0, None, True), ("2013-03-02", None, 0.0625, 0.6812, True),
            ("2013-03-03", 0.1311, 0.125, 0.6633, False), ("2013-03-04", 0.2874, 0.5625, 0.6107, False)]
    for ds, score_psi, share, perf, old_style in rows:
        reports.write_drift_report(s, "1", ds, _report(ds, score_psi=score_psi, share=share, perf=perf,
                                                       old_style=old_style), dataset=DRIFT)
    return s


def test_summaries_carry_the_three_series_from_new_and_old_reports(store: PartitionStore) -> None:
    from loopline_airflow.ui.data import drift_days

    days = drift_days(store, "1", DRIFT)["days"]
    assert [d["prediction_psi"] for d in days] == [0.02, None, 0.1311, 0.2874]
    assert [d["share_drifted"] for d in days] == [0.0, 0.0625, 0.125, 0.5625]
    assert [d["drift_share"] for d in days] == [0.5] * 4
    assert [(d["performance"] or {}).get("value") for d in days] == [None, 0.6812, 0.6633, 0.6107]
    assert days[0]["performance"] is None  # old style, no verdict: nothing to draw
    assert days[1]["performance"]["validation"] == 0.7 and days[3]["performance"]["rows"] == 1200


def test_the_page_draws_each_measured_day_and_breaks_the_line_where_one_is_missing(store: PartitionStore) -> None:
    from loopline_airflow.ui.data import drift_days
    from loopline_airflow.ui.html import _charts

    model = {"project": "flights", "model": "disruption", "drift": drift_days(store, "1", DRIFT)}
    html = _charts(model)
    prediction, share, performance = re.findall(r'<div class="chart (\w+)">(.*?)</div>', html)
    assert prediction[0] == "prediction" and "PSI of score" in prediction[1]
    assert re.findall(r"<title>([\d-]+: [\d.]+)</title></circle>", prediction[1]) == [
        "2013-03-01: 0.0200", "2013-03-03: 0.1311", "2013-03-04: 0.2874"]
    assert prediction[1].count('<polyline class="line"') == 1  # 03-01 alone, then 03-03..03-04: one line of two
    assert 'class="band"' in prediction[1] and "PSI band 0.25" in prediction[1]
    assert re.findall(r"<title>([\d-]+: [\d.]+)</title></circle>", share[1])[-1] == "2013-03-04: 0.5625"
    assert "drifted when ≥ 0.5" in share[1]
    assert "roc_auc (higher is better)" in performance[1]
    assert re.findall(r"<title>([\d-]+: [\d.]+)</title></circle>", performance[1]) == [
        "2013-03-02: 0.6812", "2013-03-03: 0.6633", "2013-03-04: 0.6107"]
    assert '<polyline class="ref"' in performance[1] and "validation metric" in performance[1]


def test_missing_series_are_said_in_place(tmp_path: Path) -> None:
    from loopline_airflow.ui.data import drift_days
    from loopline_airflow.ui.html import _charts

    s = PartitionStore((tmp_path / "store").as_uri())
    reports.write_drift_report(s, "1", "2013-03-01", _report("2013-03-01", score_psi=None, share=0.1, perf=None),
                               dataset=DRIFT)
    html = _charts({"project": "flights", "model": "disruption", "drift": drift_days(s, "1", DRIFT)})
    assert "no prediction drift measured yet" in html
    assert "no labelled performance yet: no labelled row scored by this version" in html
    assert html.count("<svg") == 1  # the share has its point
    empty = _charts({"project": "flights", "model": "disruption",
                     "drift": drift_days(PartitionStore((tmp_path / "none").as_uri()), "1", DRIFT)})
    assert "no drift report yet" in empty and "<svg" not in empty


def test_a_rewritten_report_is_read_again_and_an_unchanged_one_is_not(store: PartitionStore,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from loopline_airflow.ui import data

    calls: list[str] = []
    real = reports.read_drift_report

    def counting(store: PartitionStore, fsv: str, ds: Any, **kwargs: Any) -> Any:
        calls.append(str(ds))
        return real(store, fsv, ds, **kwargs)

    monkeypatch.setattr(reports, "read_drift_report", counting)
    data.drift_days(store, "1", DRIFT)
    assert len(calls) == 4
    data.drift_days(store, "1", DRIFT)
    assert len(calls) == 4  # every summary from the cache
    reports.write_drift_report(store, "1", "2013-03-03",
                               _report("2013-03-03", score_psi=0.4, share=0.75, perf=0.5), dataset=DRIFT)
    days = data.drift_days(store, "1", DRIFT)["days"]
    assert calls[4:] == ["2013-03-03"]  # the rerun day only, at once (no TTL to wait out)
    assert days[2]["prediction_psi"] == 0.4 and days[2]["performance"]["value"] == 0.5


def test_the_registry_part_is_reused_within_its_ttl() -> None:
    from loopline_airflow.ui.data import TTLCache

    now = [0.0]
    cache = TTLCache(ttl=30, clock=lambda: now[0])
    assert cache.get_or_set("m", lambda: "v1") == "v1"
    now[0] = 29
    assert cache.get_or_set("m", lambda: "v2") == "v1"
    now[0] = 31
    assert cache.get_or_set("m", lambda: "v3") == "v3"
    forever = TTLCache(ttl=None, clock=lambda: now[0])
    forever.get_or_set("r", lambda: 1)
    now[0] = 1e12
    assert forever.get_or_set("r", lambda: 2) == 1


def test_report_stamps_change_when_a_day_is_rewritten(store: PartitionStore) -> None:
    before = reports.report_stamps(store, "1", dataset=DRIFT)
    assert [d.isoformat() for d in before] == ["2013-03-01", "2013-03-02", "2013-03-03", "2013-03-04"]
    assert all(before.values())
    reports.write_drift_report(store, "1", "2013-03-02",
                               _report("2013-03-02", score_psi=0.3, share=0.1, perf=0.6), dataset=DRIFT)
    after = reports.report_stamps(store, "1", dataset=DRIFT)
    assert [d.isoformat() for d in before if before[d] != after[d]] == ["2013-03-02"]
