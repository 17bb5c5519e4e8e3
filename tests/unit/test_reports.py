"""Drift report tree: write, read, list, dedupe."""

from __future__ import annotations

import pytest
from loopline import reports
from loopline.store import PartitionStore

pytestmark = pytest.mark.unit


def report(ds: str, drifted: bool = True, created: str = "2013-03-02T00:10:00+00:00", model: str = "m",
           version: str = "3") -> dict:
    return {"ds": ds, "model_name": model, "model_version": version, "feature_set_version": "1",
            "created_at": created, "decision": {"drifted": drifted, "reasons": ["temp psi 0.31"],
                                                "top_features": [["temp", 0.31]]},
            "features": {"temp": {"psi": 0.31}}}


@pytest.fixture
def store(tmp_path) -> PartitionStore:
    return PartitionStore(tmp_path.as_uri())


def test_write_read_round_trip_beside_the_partitions(store, tmp_path):
    uri = reports.write_drift_report(store, "1", "2013-03-01", report("2013-03-01"), "<html>r</html>")
    assert uri == f"{store.root}/_reports/drift/v=1/ds=2013-03-01/report.json"
    assert (tmp_path / "_reports/drift/v=1/ds=2013-03-01/report.html").read_text() == "<html>r</html>"
    got = reports.read_drift_report(store, "1", "2013-03-01")
    assert got is not None and got["decision"]["drifted"] is True and got["uri"] == uri
    assert reports.read_drift_report(store, "1", "2013-03-02") is None


def test_list_filters_by_time_and_model_oldest_first(store):
    reports.write_drift_report(store, "1", "2013-03-02", report("2013-03-02", created="2013-03-03T00:00:00Z"))
    reports.write_drift_report(store, "1", "2013-03-01", report("2013-03-01", created="2013-03-02T00:00:00Z"))
    reports.write_drift_report(store, "1", "2013-03-03", report("2013-03-03", model="other",
                                                                created="2013-03-04T00:00:00Z"))
    assert [r["ds"] for r in reports.list_drift_reports(store, "1")] == ["2013-03-01", "2013-03-02", "2013-03-03"]
    assert [r["ds"] for r in reports.list_drift_reports(store, "1", "2013-03-02T00:00:00+00:00")] == [
        "2013-03-02", "2013-03-03"]
    assert [r["ds"] for r in reports.list_drift_reports(store, "1", model_name="m")] == ["2013-03-01", "2013-03-02"]
    assert reports.list_drift_reports(store, "9") == []


def test_dedupe_key_is_stable_and_changes_with_the_decision():
    a = report("2013-03-01")
    assert reports.dedupe_key(a) == reports.dedupe_key(dict(reversed(list(a.items()))))
    assert reports.dedupe_key(a) == reports.dedupe_key({**a, "created_at": "2013-04-01T00:00:00Z"})
    assert reports.dedupe_key(a) != reports.dedupe_key(report("2013-03-01", drifted=False))
    assert reports.dedupe_key(a).startswith("m:3:2013-03-01:")


def test_malformed_reports_are_refused_or_skipped(store):
    with pytest.raises(reports.ReportError, match="lacks"):
        reports.write_drift_report(store, "1", "2013-03-01", {"ds": "2013-03-01"})
    with pytest.raises(reports.ReportError, match="cannot be written under"):
        reports.write_drift_report(store, "1", "2013-03-02", report("2013-03-01"))
    store.write_side_file("reports", "drift", "1", "2013-03-05", "report.json", "{not json")
    reports.write_drift_report(store, "1", "2013-03-06", report("2013-03-06"))
    with pytest.raises(reports.ReportError, match="not valid JSON"):
        reports.list_drift_reports(store, "1")
    assert [r["ds"] for r in reports.list_drift_reports(store, "1", skip_malformed=True)] == ["2013-03-06"]


def test_summary_is_small_json():
    s = reports.summary({**report("2013-03-01"), "uri": "file:///x"})
    assert s["drifted"] is True and s["top_features"] == [["temp", 0.31]] and "features" not in s
    assert s["dedupe_key"] == reports.dedupe_key(report("2013-03-01"))
