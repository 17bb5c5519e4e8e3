"""Drift triggers: serialize() round trips, run() driven with asyncio, emit-once semantics."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from airflow.triggers.base import BaseEventTrigger, BaseTrigger
from loopline_airflow.triggers.drift import SEEN_STATE_KEY, DriftEventTrigger, DriftTrigger

from tests.unit.plugins.conftest import put_report

pytestmark = pytest.mark.unit


def rebuild(trigger: BaseTrigger) -> BaseTrigger:
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


@pytest.mark.parametrize("trigger", [
    DriftTrigger(store_root="file:///s", feature_set_version="1", model_name="m", ds="2013-03-01",
                 poll_interval=7),
    DriftEventTrigger(store_root="s3://b/s", feature_set_version="2", model_name="m",
                      since="2013-03-01T00:00:00+00:00", poll_interval=30, only_drifted=False),
])
def test_serialize_round_trips(trigger):
    again = rebuild(trigger)
    assert type(again) is type(trigger) and again.serialize() == trigger.serialize()


def test_event_trigger_is_an_event_trigger():
    assert issubclass(DriftEventTrigger, BaseEventTrigger) and not issubclass(DriftTrigger, BaseEventTrigger)


async def first_event(trigger: BaseTrigger, timeout: float = 5.0) -> Any:
    gen = trigger.run()
    try:
        return (await asyncio.wait_for(gen.__anext__(), timeout)).payload
    finally:
        await gen.aclose()


def test_drift_trigger_waits_then_fires_once(report_store):
    async def scenario() -> Any:
        trigger = DriftTrigger(store_root=report_store.root, feature_set_version="1", model_name="m",
                               ds="2013-03-01", poll_interval=0.05)
        task = asyncio.create_task(first_event(trigger))
        await asyncio.sleep(0.2)
        assert not task.done()  # nothing yet: still polling
        await asyncio.to_thread(put_report, report_store, "2013-03-01", True)
        return await task

    payload = asyncio.run(scenario())
    assert payload["status"] == "drifted" and payload["report"]["ds"] == "2013-03-01"


def test_drift_trigger_reports_not_drifted_and_errors(report_store):
    put_report(report_store, "2013-03-01", drifted=False)
    trig = DriftTrigger(store_root=report_store.root, feature_set_version="1", ds="2013-03-01", poll_interval=0.01)
    assert asyncio.run(first_event(trig))["status"] == "not_drifted"
    report_store.write_side_file("reports", "drift", "1", "2013-03-02", "report.json", "[]")
    trig = DriftTrigger(store_root=report_store.root, feature_set_version="1", ds="2013-03-02", poll_interval=0.01)
    assert asyncio.run(first_event(trig))["status"] == "error"


class FakeAssetState:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    async def aset(self, key: str, value: Any) -> None:
        self.data[key] = value


@contextlib.asynccontextmanager
async def consuming(trigger: DriftEventTrigger) -> AsyncIterator[list[dict]]:
    """The trigger runs while the block does; the list holds the payloads it yielded so far."""
    got: list[dict] = []

    async def consume() -> None:
        async for event in trigger.run():
            got.append(event.payload)

    task = asyncio.create_task(consume())
    try:
        yield got
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


async def collect(trigger: DriftEventTrigger, seconds: float) -> list[dict]:
    async with consuming(trigger) as got:
        await asyncio.sleep(seconds)
    return got


def test_event_trigger_emits_each_drifted_report_once_even_after_a_restart(report_store):
    put_report(report_store, "2013-03-01", drifted=True, created="2013-03-02T00:00:00Z")
    put_report(report_store, "2013-03-02", drifted=False, created="2013-03-03T00:00:00Z")
    state = FakeAssetState()

    def make() -> DriftEventTrigger:
        trig = DriftEventTrigger(store_root=report_store.root, feature_set_version="1", model_name="m",
                                 poll_interval=0.05)
        trig.asset_state_store = state  # what the triggerer injects for a watched asset
        return trig

    async def scenario() -> tuple[list[dict], list[dict]]:
        first = await collect(make(), 0.3)
        # the same report rewritten (same decision) and a new drifted day
        await asyncio.to_thread(put_report, report_store, "2013-03-01", True, "2013-03-02T06:00:00Z")
        await asyncio.to_thread(put_report, report_store, "2013-03-03", True, "2013-03-04T00:00:00Z")
        second = await collect(make(), 0.3)  # a restarted triggerer
        return first, second

    first, second = asyncio.run(scenario())
    assert [e["ds"] for e in first] == ["2013-03-01"]
    assert [e["ds"] for e in second] == ["2013-03-03"]
    assert len(state.data[SEEN_STATE_KEY]) == 2


def test_event_trigger_without_state_store_dedupes_in_memory_and_survives_bad_reports(report_store):
    put_report(report_store, "2013-03-01", drifted=True)
    report_store.write_side_file("reports", "drift", "1", "2013-03-02", "report.json", "{oops")
    trig = DriftEventTrigger(store_root=report_store.root, feature_set_version="1", poll_interval=0.02)
    events = asyncio.run(collect(trig, 0.3))
    assert [e["ds"] for e in events] == ["2013-03-01"]


def test_event_trigger_reads_each_report_once_until_it_is_rewritten(report_store, monkeypatch):
    # A watcher polls every few seconds all year: a report it has read is not read again unless it is rewritten
    # (a cleared day's drift check), and a rewritten report that now says drifted is emitted.
    from loopline import reports

    put_report(report_store, "2013-03-01", drifted=False, created="2013-03-02T00:00:00Z")
    put_report(report_store, "2013-03-02", drifted=True, created="2013-03-03T00:00:00Z")
    read: list[str] = []
    real = reports.read_drift_report

    def counted(store, fsv, ds, **kwargs):  # type: ignore[no-untyped-def]
        read.append(str(ds))
        return real(store, fsv, ds, **kwargs)

    monkeypatch.setattr(reports, "read_drift_report", counted)
    trig = DriftEventTrigger(store_root=report_store.root, feature_set_version="1", model_name="m",
                             poll_interval=0.02)

    async def scenario() -> list[dict]:
        async with consuming(trig) as got:
            await asyncio.sleep(0.3)  # many polls
            assert sorted(read) == ["2013-03-01", "2013-03-02"], read
            await asyncio.to_thread(put_report, report_store, "2013-03-01", True, "2013-03-04T00:00:00Z")
            await asyncio.sleep(0.3)
        return got

    events = asyncio.run(scenario())
    assert [e["ds"] for e in events] == ["2013-03-02", "2013-03-01"]
    assert sorted(read) == ["2013-03-01", "2013-03-01", "2013-03-02"], read
