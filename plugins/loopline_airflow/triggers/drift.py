"""Drift triggers: wait in the triggerer for a drift report that says "drifted".

Both triggers share one polling implementation (:func:`check_drift`, :func:`new_drift_reports`): plain
synchronous reads of the report tree (:mod:`loopline.reports`) run with ``asyncio.to_thread`` so the
triggerer's event loop never blocks on storage.

- :class:`DriftTrigger` (a task's deferral, used by :class:`~loopline_airflow.sensors.drift.DriftSensor`)
  fires once and stops.
- :class:`DriftEventTrigger` (for an ``AssetWatcher``: a DAG scheduled on drift with no worker slot waiting)
  runs for as long as the watcher exists and emits every new drifted report once. Each report has a stable
  :func:`loopline.reports.dedupe_key`; the keys already emitted are kept in the watched asset's state store
  (when the triggerer provides one) and are recorded *before* the event is yielded, so a restarted triggerer
  does not emit a report again (at most once).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, BaseTrigger, TriggerEvent

log = logging.getLogger(__name__)
SEEN_STATE_KEY = "loopline.drift.emitted"
MAX_SEEN = 1000


def _store(store_root: str) -> Any:
    # Called in a worker thread (asyncio.to_thread): the provider builds its filesystem synchronously.
    from loopline_airflow.hooks.store import partition_store

    return partition_store(root=store_root, check=False)


def check_drift(
    store_root: str,
    feature_set_version: str,
    *,
    model_name: str | None = None,
    ds: str | None = None,
    since: str | None = None,
    reports_dataset: str = "drift",
) -> dict[str, Any] | None:
    """One look at the report tree.

    With ``ds``: that day's report decides — ``{"status": "drifted" | "not_drifted", "report": summary}``,
    or None while it has not been written. Otherwise: the oldest drifted report created after ``since``
    (``{"status": "drifted", ...}``) or None. Reports about another model than ``model_name`` are ignored.
    """
    from loopline import reports

    store = _store(store_root)
    if ds:
        report = reports.read_drift_report(store, feature_set_version, ds, dataset=reports_dataset)
        if report is None or (model_name and report.get("model_name") != model_name):
            return None
        status = "drifted" if report["decision"]["drifted"] else "not_drifted"
        return {"status": status, "report": reports.summary(report)}
    for report in reports.list_drift_reports(store, feature_set_version, since, model_name=model_name or None,
                                             dataset=reports_dataset):
        if report["decision"]["drifted"]:
            return {"status": "drifted", "report": reports.summary(report)}
    return None


def new_drift_reports(
    store_root: str,
    feature_set_version: str,
    seen: set[str],
    *,
    model_name: str | None = None,
    since: str | None = None,
    only_drifted: bool = True,
    reports_dataset: str = "drift",
    memo: dict[tuple[str, str], dict[str, Any] | None] | None = None,
) -> list[dict[str, Any]]:
    """Summaries of the reports (drifted ones only, by default) whose dedupe key is not in ``seen``, oldest
    ``created_at`` first.

    ``memo``: what earlier looks with the same arguments made of each report, keyed by its day and the identity of
    its ``report.json`` (:func:`loopline.reports.report_stamps`): the summary, or None for a report that does not
    qualify (another model, not drifted, not after ``since``, malformed; skipped with a warning). Only a new or
    rewritten report is read (a watcher polling every few seconds used to read every report of the year on each
    look). Updated in place, down to the reports that still exist.
    """
    from loopline import reports

    store = _store(store_root)
    memo = {} if memo is None else memo
    after = None if since is None else reports.parse_time(since, "since")
    current: dict[tuple[str, str], dict[str, Any] | None] = {}
    for day, stamp in reports.report_stamps(store, feature_set_version, dataset=reports_dataset).items():
        if stamp is None:  # a write in progress or a removed report: look again next time
            continue
        key = (day.isoformat(), stamp)
        if key not in memo:
            memo[key] = _qualifying(store, feature_set_version, day, reports_dataset, model_name, after,
                                    only_drifted)
        current[key] = memo[key]
    memo.clear()
    memo.update(current)
    summaries = sorted((s for s in current.values() if s is not None),
                       key=lambda s: (reports.parse_time(s["created_at"]), str(s["ds"])))
    return [s for s in summaries if s["dedupe_key"] not in seen]


def _qualifying(store: Any, fsv: str, day: dt.date, dataset: str, model_name: str | None,
                after: dt.datetime | None, only_drifted: bool) -> dict[str, Any] | None:
    """One report's summary if :func:`new_drift_reports` would return it (whatever was seen), else None."""
    from loopline import reports

    try:
        report = reports.read_drift_report(store, fsv, day, dataset=dataset)
    except reports.ReportError as exc:
        log.warning("skipping malformed drift report: %s", exc)
        return None
    if report is None or (model_name and report.get("model_name") != model_name):
        return None
    if after is not None and reports.parse_time(report["created_at"]) <= after:
        return None
    if only_drifted and not report["decision"]["drifted"]:
        return None
    return reports.summary(report)


def _iso(value: str | dt.datetime | None) -> str | None:
    if value is None or value == "":
        return None
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


class DriftTrigger(BaseTrigger):
    """Fire once when the drift report for ``ds`` exists (or any drifted report newer than ``since`` does).

    Events: ``{"status": "drifted", "report": summary}``; with ``ds`` also ``{"status": "not_drifted", ...}``
    when ``stop_when_not_drifted``; ``{"status": "error", "message": ...}`` for a malformed report.
    Storage errors (a flaky object store) are logged and polled again.
    """

    def __init__(
        self,
        *,
        store_root: str,
        feature_set_version: str,
        model_name: str | None = None,
        ds: str | None = None,
        since: str | dt.datetime | None = None,
        poll_interval: float = 60.0,
        stop_when_not_drifted: bool = True,
        reports_dataset: str = "drift",
    ) -> None:
        super().__init__()
        self.reports_dataset = reports_dataset
        self.store_root = store_root
        self.feature_set_version = str(feature_set_version)
        self.model_name = model_name
        self.ds = ds
        self.since = _iso(since)
        self.poll_interval = float(poll_interval)
        self.stop_when_not_drifted = stop_when_not_drifted

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "store_root": self.store_root, "feature_set_version": self.feature_set_version,
                "model_name": self.model_name, "ds": self.ds, "since": self.since,
                "poll_interval": self.poll_interval, "stop_when_not_drifted": self.stop_when_not_drifted,
                "reports_dataset": self.reports_dataset,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from loopline.reports import ReportError

        while True:
            try:
                found = await asyncio.to_thread(
                    check_drift, self.store_root, self.feature_set_version, model_name=self.model_name,
                    ds=self.ds, since=self.since, reports_dataset=self.reports_dataset,
                )
            except ReportError as exc:
                yield TriggerEvent({"status": "error", "message": str(exc)})
                return
            except OSError as exc:
                self.log.warning("Could not read drift reports under %s (will poll again): %s",
                                 self.store_root, exc)
                found = None
            if found and (found["status"] == "drifted" or self.stop_when_not_drifted):
                yield TriggerEvent(found)
                return
            await asyncio.sleep(self.poll_interval)


class DriftEventTrigger(BaseEventTrigger):
    """Emit one event per new drifted report, for ``AssetWatcher``-scheduled DAGs.

    The event payload is the report summary (``ds``, ``model_name``, ``model_version``, ``drifted``,
    ``reasons``, ``top_features``, ``uri``, ``dedupe_key``); the triggered run reads it from the asset
    event's ``extra["payload"]``.

    :param since: Ignore reports created at or before this time (ISO string).
    :param only_drifted: Emit only reports whose decision says drifted.
    """

    def __init__(
        self,
        *,
        store_root: str,
        feature_set_version: str,
        model_name: str | None = None,
        since: str | dt.datetime | None = None,
        poll_interval: float = 60.0,
        only_drifted: bool = True,
        reports_dataset: str = "drift",
    ) -> None:
        super().__init__()
        self.reports_dataset = reports_dataset
        self.store_root = store_root
        self.feature_set_version = str(feature_set_version)
        self.model_name = model_name
        self.since = _iso(since)
        self.poll_interval = float(poll_interval)
        self.only_drifted = only_drifted
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest keys are dropped first
        self._memo: dict[tuple[str, str], dict[str, Any] | None] = {}  # see new_drift_reports

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "store_root": self.store_root, "feature_set_version": self.feature_set_version,
                "model_name": self.model_name, "since": self.since, "poll_interval": self.poll_interval,
                "only_drifted": self.only_drifted, "reports_dataset": self.reports_dataset,
            },
        )

    async def _load_seen(self) -> None:
        state = getattr(self, "asset_state_store", None)
        if state is None:
            return
        try:
            stored = await state.aget(SEEN_STATE_KEY, [])
        except Exception as exc:  # no state store reachable: dedupe in memory only
            self.log.warning("Could not read emitted drift reports from the asset state: %s", exc)
            return
        self._seen.update((str(k), None) for k in (stored or []))

    async def _remember(self, key: str) -> None:
        self._seen[key] = None
        state = getattr(self, "asset_state_store", None)
        if state is None:
            return
        try:
            await state.aset(SEEN_STATE_KEY, list(self._seen)[-MAX_SEEN:])
        except Exception as exc:
            self.log.warning("Could not record emitted drift report %s in the asset state: %s", key, exc)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        await self._load_seen()
        while True:
            try:
                fresh = await asyncio.to_thread(
                    new_drift_reports, self.store_root, self.feature_set_version, set(self._seen),
                    model_name=self.model_name, since=self.since, only_drifted=self.only_drifted,
                    reports_dataset=self.reports_dataset, memo=self._memo,
                )
            except (OSError, ValueError) as exc:  # flaky storage, one malformed report: keep watching
                self.log.warning("Could not list drift reports under %s (will poll again): %s",
                                 self.store_root, exc)
                fresh = []
            for summary in fresh:
                await self._remember(summary["dedupe_key"])  # before the yield: at most once
                self.log.info("Drift report %s (%s): emitting", summary["uri"], summary["dedupe_key"])
                yield TriggerEvent(summary)
            await asyncio.sleep(self.poll_interval)
