"""Where drift reports live and how to find them.

One report per feature-set version and day: ``<root>/_reports/drift/v=<fsv>/ds=<ds>/report.json`` (plus
``report.html``), written atomically through :meth:`PartitionStore.write_side_file`. The drift monitor writes
them; the drift sensor and triggers poll for them. A report is a JSON object with at least::

    {"ds": "2013-03-01", "model_name": "...", "model_version": "3", "feature_set_version": "1",
     "created_at": "2013-03-02T00:10:00+00:00",
     "decision": {"drifted": true, "reasons": ["..."], "top_features": [["temp", 0.31], ...]},
     "features": {...}}
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from loopline.store import PartitionStore, as_day

REPORTS_KIND = "reports"
DRIFT = "drift"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
REQUIRED_KEYS = ("ds", "model_name", "model_version", "feature_set_version", "created_at", "decision")
_DS_RE = re.compile(r"^ds=(\d{4}-\d{2}-\d{2})$")
log = logging.getLogger(__name__)


class ReportError(ValueError):
    """A drift report is malformed; the message names the report and the missing or bad field."""


def check_report(report: Mapping[str, Any], where: str = "drift report") -> None:
    """Raise :class:`ReportError` unless ``report`` has the keys every reader relies on."""
    missing = [k for k in REQUIRED_KEYS if k not in report]
    if missing:
        raise ReportError(f"{where} lacks {missing}; a report needs {list(REQUIRED_KEYS)}")
    decision = report["decision"]
    if not isinstance(decision, Mapping) or not isinstance(decision.get("drifted"), bool):
        raise ReportError(f"{where}: 'decision' must be an object with a boolean 'drifted'")
    parse_time(str(report["created_at"]), where)


def parse_time(value: str | dt.datetime, where: str = "value") -> dt.datetime:
    """An ISO timestamp as an aware datetime (naive ones are taken as UTC)."""
    if isinstance(value, dt.datetime):
        ts = value
    else:
        try:
            ts = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ReportError(f"{where}: {value!r} is not an ISO-8601 timestamp") from exc
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def write_drift_report(
    store: PartitionStore, fsv: str, ds: str | dt.date, report: Mapping[str, Any], html: str | None = None,
    *, dataset: str = DRIFT,
) -> str:
    """Write (or replace) the drift report of a day; returns the URI of ``report.json``.

    The HTML page is written first, the JSON last: readers look for the JSON, so a report is visible only
    once both are in place.
    """
    day = as_day(ds).isoformat()
    body = dict(report)
    body.setdefault("ds", day)
    body.setdefault("feature_set_version", fsv)
    if str(body["ds"]) != day:
        raise ReportError(f"report for ds={body['ds']} cannot be written under ds={day}")
    check_report(body, f"drift report v={fsv} ds={day}")
    if html is not None:
        store.write_side_file(REPORTS_KIND, dataset, fsv, day, REPORT_HTML, html)
    return store.write_side_file(REPORTS_KIND, dataset, fsv, day, REPORT_JSON,
                                 json.dumps(body, indent=2, sort_keys=True, default=str))


def report_uri(store: PartitionStore, fsv: str, ds: str | dt.date, *, dataset: str = DRIFT) -> str:
    return f"{store.side_path(REPORTS_KIND, dataset, fsv, ds)}/{REPORT_JSON}"


def read_drift_report(store: PartitionStore, fsv: str, ds: str | dt.date, *,
                      dataset: str = DRIFT) -> dict[str, Any] | None:
    """The drift report of a day, or None when none was written. Adds ``uri`` to the returned dict."""
    try:
        raw = store.read_side_file(REPORTS_KIND, dataset, fsv, ds, REPORT_JSON)
    except FileNotFoundError:
        return None
    uri = report_uri(store, fsv, ds, dataset=dataset)
    try:
        report = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ReportError(f"drift report {uri} is not valid JSON: {exc}") from exc
    if not isinstance(report, dict):
        raise ReportError(f"drift report {uri} is not a JSON object")
    check_report(report, f"drift report {uri}")
    report["uri"] = uri
    return report


def report_days(store: PartitionStore, fsv: str, *, dataset: str = DRIFT) -> list[dt.date]:
    """Days that have a drift report folder, oldest first (a fresh listing: the triggerer polls with one
    long-lived filesystem)."""
    return store.side_days(REPORTS_KIND, dataset, fsv)


_STAMP_KEYS = ("ino", "mtime", "size", "ETag", "etag", "generation", "md5Hash", "LastModified", "last_modified",
               "updated")


def report_stamps(store: PartitionStore, fsv: str, *, dataset: str = DRIFT) -> dict[dt.date, str | None]:
    """Every day with a report folder (oldest first) and the identity of its ``report.json``, from two listings.

    The identity changes whenever the report is written again (a new file renamed in place locally: another
    inode and mtime; a new object on S3/GCS: another ETag or generation), so a reader may cache what it parsed
    from a report under ``(day, identity)`` for as long as it likes. None: the folder has no ``report.json``
    (a write in progress, or a removed report).
    """
    days = report_days(store, fsv, dataset=dataset)  # refreshes the listing
    if not days:
        return {}
    base = f"{store.root}/_{REPORTS_KIND}/{dataset}/v={fsv}"
    found: dict[str, str] = {}
    for path, info in store.fs.find(base, detail=True).items():
        parts = str(path).rstrip("/").rsplit("/", 2)
        if len(parts) == 3 and parts[2] == REPORT_JSON:
            found[parts[1]] = "|".join(f"{k}={info[k]}" for k in _STAMP_KEYS if info.get(k) is not None)
    return {day: found.get(f"ds={day.isoformat()}") for day in days}


def list_drift_reports(
    store: PartitionStore,
    fsv: str,
    since: dt.datetime | str | None = None,
    *,
    model_name: str | None = None,
    skip_malformed: bool = False,
    dataset: str = DRIFT,
) -> list[dict[str, Any]]:
    """Drift reports of a feature-set version, oldest ``created_at`` first.

    Args:
        since: Only reports created strictly after this time.
        model_name: Only reports about this registered model.
        skip_malformed: Log and skip a malformed report instead of raising :class:`ReportError`.
    """
    after = None if since is None else parse_time(since, "since")
    out = []
    for day in report_days(store, fsv, dataset=dataset):
        try:
            report = read_drift_report(store, fsv, day, dataset=dataset)
        except ReportError as exc:
            if not skip_malformed:
                raise
            log.warning("skipping malformed drift report: %s", exc)
            continue
        if report is None:
            continue
        if model_name is not None and report.get("model_name") != model_name:
            continue
        if after is not None and parse_time(report["created_at"]) <= after:
            continue
        out.append(report)
    return sorted(out, key=lambda r: (parse_time(r["created_at"]), str(r["ds"])))


def dedupe_key(report: Mapping[str, Any]) -> str:
    """A key that is the same for the same report on every poll: model, version, day, decision hash.

    A report rewritten with the same decision keeps its key (so it is not emitted twice); a rerun that
    changes the decision gets a new key.
    """
    decision = json.dumps(report.get("decision", {}), sort_keys=True, default=str)
    digest = hashlib.sha256(decision.encode()).hexdigest()[:16]
    return f"{report.get('model_name')}:{report.get('model_version')}:{report.get('ds')}:{digest}"


def summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The small JSON that goes into XCom and asset-event extras: no per-feature detail."""
    decision = report.get("decision", {})
    return {
        "ds": report.get("ds"),
        "model_name": report.get("model_name"),
        "model_version": report.get("model_version"),
        "feature_set_version": report.get("feature_set_version"),
        "created_at": report.get("created_at"),
        "drifted": bool(decision.get("drifted")),
        "reasons": list(decision.get("reasons", []))[:10],
        "top_features": [list(x) for x in decision.get("top_features", [])][:10],
        "uri": report.get("uri"),
        "dedupe_key": dedupe_key(report),
    }
