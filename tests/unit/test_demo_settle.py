"""loopline_dev.demo.settle: the loop of the flights project's generated DAGs is settled only when no run, no queued
asset event and no drifted report still waiting for the triggerer's watcher remain (on a fake REST API and a fake
clock); lost asset events are run by hand per model over exactly their days."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from loopline.settings import Settings
from loopline_dev import demo

pytestmark = pytest.mark.unit

LOOP = demo.Loop.of("flights", ("disruption",))
REPORT = {"ds": "2013-03-05", "model_name": "flights.disruption", "model_version": "1",
          "decision": {"drifted": True}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeAPI:
    """Answers the three questions settle asks; each attribute is a function of the fake time."""

    def __init__(self, clock: Clock, *, running_until: float = 0, queued_until: float = 0,
                 emitted_at: float | None = None) -> None:
        self.clock, self.emitted_at = clock, emitted_at
        self.running_until, self.queued_until = running_until, queued_until

    def request(self, method: str, path: str, payload: Any = None, params: dict[str, Any] | None = None) -> Any:
        if path.endswith("/assets/queuedEvents"):
            return {"total_entries": int(self.clock.now < self.queued_until and ".score/" in path)}
        assert path == "/api/v2/dags/~/dagRuns"
        return {"total_entries": int(self.clock.now < self.running_until and params["state"] == ["running"])}

    def asset_events(self, asset_name: str | None = None, **params: Any) -> list[dict[str, Any]]:
        assert asset_name == "loopline.flights.disruption.drift"
        if self.emitted_at is None or self.clock.now < self.emitted_at:
            return []
        from loopline.reports import dedupe_key

        return [{"extra": {"from_trigger": True, "payload": {"dedupe_key": dedupe_key(REPORT)}}}]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(demo.time, "monotonic", c.monotonic)
    monkeypatch.setattr(demo.time, "sleep", c.sleep)
    return c


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    import loopline.reports

    monkeypatch.setattr(loopline.reports, "list_drift_reports", lambda *a, **k: [REPORT])
    return Settings(home=tmp_path)


def test_waits_for_runs_and_queued_events(clock: Clock, settings: Settings) -> None:
    api = FakeAPI(clock, running_until=10, queued_until=25, emitted_at=0)
    demo.settle(api, LOOP, settings=settings)  # type: ignore[arg-type]
    assert 27 <= clock.now <= 30


def test_waits_for_the_watcher_to_emit_a_drifted_report(clock: Clock, settings: Settings) -> None:
    api = FakeAPI(clock, emitted_at=40)
    demo.settle(api, LOOP, settings=settings)  # type: ignore[arg-type]
    assert 42 <= clock.now <= 45


def test_an_emitted_report_does_not_hold_the_loop(clock: Clock, settings: Settings) -> None:
    demo.settle(FakeAPI(clock, emitted_at=0), LOOP, settings=settings)  # type: ignore[arg-type]
    assert clock.now <= 4


def test_a_report_never_emitted_is_given_up_after_the_grace(clock: Clock, settings: Settings,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    demo.settle(FakeAPI(clock), LOOP, settings=settings, drift_grace=60)  # type: ignore[arg-type]
    assert 60 <= clock.now <= 65
    assert "not emitted by the drift watcher" in capsys.readouterr().out


def test_without_settings_only_the_quiet_period_counts(clock: Clock) -> None:
    demo.settle(FakeAPI(clock, running_until=10), LOOP, quiet_seconds=12)  # type: ignore[arg-type]
    assert 22 <= clock.now <= 25


class Trigger:
    def __init__(self) -> None:
        self.runs: list[tuple[str, dict[str, Any]]] = []

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        self.runs.append((dag_id, conf or {}))
        return {"dag_run_id": f"manual-{len(self.runs)}"}


def test_lost_events_are_run_by_hand_over_exactly_their_days(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    import datetime as dt

    import loopline.reports

    day = dt.date(2013, 3, 1)
    featured = [day + dt.timedelta(days=i) for i in range(10)]
    scored = [d for d in featured if d.day not in (3, 4, 8)]
    checked = [d for d in scored if d.day != 6]

    class Store:
        def __init__(self, root: str) -> None:
            pass

        def days(self, dataset: str, version: str) -> list[dt.date]:
            return featured if dataset == "flights/features" else scored

    monkeypatch.setattr(demo, "PartitionStore", Store)
    monkeypatch.setattr(loopline.reports, "report_days", lambda store, fsv, dataset: checked)
    api, repaired = Trigger(), {}  # type: ignore[var-annotated]
    settings = Settings(home=tmp_path)
    assert demo.repair_lost_events(api, LOOP, settings, repaired)  # type: ignore[arg-type]
    assert api.runs == [("flights.disruption.score", {"start_ds": "2013-03-03", "end_ds": "2013-03-04"}),
                        ("flights.disruption.score", {"start_ds": "2013-03-08", "end_ds": "2013-03-08"})]
    scored[:] = featured  # the manual runs scored them, and their predictions events had them checked
    checked.extend(d for d in featured if d.day in (3, 4, 8))
    assert demo.repair_lost_events(api, LOOP, settings, repaired)  # type: ignore[arg-type]
    assert api.runs[-1] == ("flights.disruption.drift", {"start_ds": "2013-03-06", "end_ds": "2013-03-06"})
    checked[:] = featured
    assert not demo.repair_lost_events(api, LOOP, settings, repaired)  # type: ignore[arg-type]
    assert repaired == {"flights.disruption.score": ["2013-03-03", "2013-03-04", "2013-03-08"],
                        "flights.disruption.drift": ["2013-03-06"]}
