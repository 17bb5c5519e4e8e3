"""loopline_dev.demo.settle: the loop of the flights project's generated DAGs is settled only when no run, no queued
asset event, no partition waiting for its run and no drifted report still waiting for the triggerer's watcher
remain (on a fake REST API and a fake clock); every day featured, scored and checked exactly once, by the runs
of its partition key named in the manifests."""

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
                 emitted_at: float | None = None, pending_until: float = 0, failing_until: float = 0,
                 failing_status: int = 500) -> None:
        self.clock, self.emitted_at = clock, emitted_at
        self.failing_until, self.failing_status = failing_until, failing_status
        self.running_until, self.queued_until, self.pending_until = running_until, queued_until, pending_until

    def request(self, method: str, path: str, payload: Any = None, params: dict[str, Any] | None = None) -> Any:
        if path == "/ui/partitioned_dag_runs":  # partitions of a partitioned DAG whose run is not created yet
            assert params == {"has_created_dag_run_id": "false"}
            pending = [{"dag_id": "flights.disruption.drift", "partition_key": "2013-03-05"},
                       {"dag_id": "other.project.score", "partition_key": "2013-03-05"}]
            return {"partitioned_dag_runs": pending if self.clock.now < self.pending_until else pending[1:]}
        raise AssertionError(f"settle sent {method} {path} raw; only /ui/partitioned_dag_runs has no typed method")

    def count_queued_asset_events(self, dag_id: str) -> int:
        return int(self.clock.now < self.queued_until and dag_id.endswith(".score"))

    def count_dag_runs(self, dag_id: str, **params: Any) -> int:
        assert dag_id == "~" and params["dag_id_pattern"] == "flights."
        return int(self.clock.now < self.running_until and params["state"] == ["running"])

    def asset_events(self, asset_name: str | None = None, **params: Any) -> list[dict[str, Any]]:
        assert asset_name == "loopline.flights.disruption.drift"
        if self.clock.now < self.failing_until:  # Airflow 3.3.2 while a run an event created is queued
            from loopline_dev.rest import AirflowAPIError

            raise AirflowAPIError("GET", "/api/v2/assets/events", self.failing_status, "Internal Server Error")
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


def test_a_running_loop_is_not_asked_for_its_queued_events(clock: Clock, settings: Settings) -> None:
    api = FakeAPI(clock, running_until=10, emitted_at=0)
    asked: list[float] = []
    count = api.count_queued_asset_events
    api.count_queued_asset_events = lambda dag_id: (asked.append(clock.now), count(dag_id))[1]  # type: ignore[method-assign]
    demo.settle(api, LOOP, settings=settings)  # type: ignore[arg-type]
    assert asked and min(asked) >= 10  # seven questions a look while runs were active, before


def test_waits_for_the_watcher_to_emit_a_drifted_report(clock: Clock, settings: Settings) -> None:
    api = FakeAPI(clock, emitted_at=40)
    demo.settle(api, LOOP, settings=settings)  # type: ignore[arg-type]
    assert 42 <= clock.now <= 45


def test_the_asset_events_500_of_a_queued_run_counts_as_busy(clock: Clock, settings: Settings) -> None:
    # apache/airflow#71360: listing the drift asset's events fails while the retrain run one of them created
    # has not started; the loop is not settled then, and settle looks again instead of failing the demo.
    demo.settle(FakeAPI(clock, emitted_at=0, failing_until=30), LOOP, settings=settings)  # type: ignore[arg-type]
    assert 32 <= clock.now <= 35


def test_another_api_error_is_not_swallowed(clock: Clock, settings: Settings) -> None:
    from loopline_dev.rest import AirflowAPIError

    with pytest.raises(AirflowAPIError, match="403"):
        demo.settle(FakeAPI(clock, emitted_at=0, failing_until=30, failing_status=403), LOOP,  # type: ignore[arg-type]
                    settings=settings)


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


def test_waits_for_partitions_whose_run_is_not_created_yet(clock: Clock) -> None:
    demo.settle(FakeAPI(clock, pending_until=9), LOOP, quiet_seconds=2)  # type: ignore[arg-type]
    assert 11 <= clock.now <= 13


class Airflow:
    """Runs and successful task instances of the loop's DAGs, as the REST API lists them."""

    def __init__(self, runs: dict[str, list[tuple[str, str | None]]]) -> None:
        self.runs = runs  # dag_id -> [(run_id, partition_key)]

    def dag_runs(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        return [{"dag_run_id": rid, "partition_key": key} for rid, key in self.runs.get(dag_id, [])]

    def all_task_instances(self, dag_id: str, **params: Any) -> list[dict[str, Any]]:
        assert params["state"] == ["success"]
        return [{"dag_run_id": rid} for rid, _ in self.runs.get(dag_id, [])]


def test_exactly_once_counts_days_done_by_one_run_of_their_key_that_wrote_them(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import datetime as dt
    from types import SimpleNamespace

    import loopline.reports

    days = [dt.date(2013, 3, 1) + dt.timedelta(days=i) for i in range(4)]
    keys = [d.isoformat() for d in days]
    written = {  # dataset -> day -> the run id its manifest names
        "flights/features": {d: f"backfill__{d}" for d in keys},
        "flights/disruption/predictions": {d: f"asset__score_{d}" for d in keys[:3]},  # the 4th never scored
    }
    reports = {d: f"asset__drift_{d}" for d in keys[:3]}
    reports[keys[1]] = "manual__by_hand"  # re-checked by hand after its own run

    class Store:
        def __init__(self, root: str) -> None:
            pass

        def days(self, dataset: str, version: str) -> list[dt.date]:
            return [dt.date.fromisoformat(d) for d in written[dataset]]

        def manifest(self, dataset: str, version: str, day: dt.date) -> Any:
            return SimpleNamespace(extra={"run_id": written[dataset][day.isoformat()]})

    monkeypatch.setattr(demo, "PartitionStore", Store)
    monkeypatch.setattr(loopline.reports, "read_drift_report",
                        lambda store, fsv, day, dataset: {"run": {"run_id": reports[day]}} if day in reports else None)
    api = Airflow({
        "flights.features": [(f"backfill__{d}", d) for d in keys],
        "flights.disruption.score": [(f"asset__score_{d}", d) for d in keys[:3]] + [("asset__again", keys[0])],
        "flights.disruption.drift": [(f"asset__drift_{d}", d) for d in keys[:3]] + [("manual__by_hand", None)],
    })
    out = demo.exactly_once(api, LOOP, Settings(home=tmp_path))  # type: ignore[arg-type]
    assert out["flights.features"] == {"step": "featured", "days": 4, "exactly_once": 4, "missing": [],
                                       "more_than_once": [], "not_by_its_run": [], "runs_by_hand": 0}
    assert out["flights.disruption.score"] == {"step": "scored", "days": 3, "exactly_once": 2, "missing": [keys[3]],
                                               "more_than_once": [keys[0]], "not_by_its_run": [], "runs_by_hand": 0}
    assert out["flights.disruption.drift"] == {"step": "checked", "days": 3, "exactly_once": 2, "missing": [],
                                               "more_than_once": [], "not_by_its_run": [keys[1]], "runs_by_hand": 1}
    text = demo.render({"project": "flights", "days_featured": 4, "days_failed_validation": [], "models": {},
                        "exactly_once": out})
    assert "flights.disruption.score         scored    2/3 days" in text and "'missing': ['2013-03-04']" in text
