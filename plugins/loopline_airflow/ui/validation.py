"""One features day's validation result, as the features task's "Validation result" link opens it.

Where it is: a day that fails the project's suites has its full Great Expectations result written beside the
partition (``_validation/P/features/v=<version>/ds=<day>/gx_result.json``, :func:`loopline.validation.
write_results`); a day that passes writes its partition and no result file (the passing check runs in GX's
``BOOLEAN_ONLY`` mode, which is cheap and keeps nothing). So the page shows the stored failures when there are
some, says the day passed when its partition exists, and otherwise that there is nothing for that day.
"""

from __future__ import annotations

import datetime as dt
import json
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.project.spec import Project

    from loopline_airflow.ui.data import Sources


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _page(title: str, body: str) -> str:
    from loopline_airflow.ui.html import CSS

    return (f'<!doctype html><html><head><meta charset="utf-8"><title>{_e(title)}</title><style>{CSS}</style>'
            f"</head><body><h1>{_e(title)}</h1>{body}</body></html>")


def _project(src: Sources, name: str) -> Project | None:
    return next((f.project for f in src.projects() if f.project is not None and f.project.project == name), None)


def validation_result(src: Sources, project_name: str, ds: str) -> tuple[int, str, bytes | None]:
    """(HTTP status, HTML page, the stored GX result JSON or None) for one project and day."""
    from loopline.project.names import project_names
    from loopline.validation import RESULT_JSON, VALIDATION_KIND

    title = f"Validation of {project_name} features {ds}"
    try:
        day = dt.date.fromisoformat(ds)
    except ValueError:
        return 404, _page(title, f"<p>{_e(ds)} is not a day (YYYY-MM-DD)</p>"), None
    try:
        project = _project(src, project_name)
    except Exception as exc:
        return 503, _page(title, f"<p>projects could not be listed: {_e(exc)}</p>"), None
    if project is None:
        return 404, _page(title, f"<p>no project {_e(project_name)}</p>"), None
    dataset, fsv = project_names(project).features_dataset, str(project.features.version)
    try:
        store = src.store()
        raw: bytes | None = store.read_side_file(VALIDATION_KIND, dataset, fsv, day, RESULT_JSON)
    except FileNotFoundError:
        raw = None
    except Exception as exc:
        return 503, _page(title, f"<p>the store could not be read: {_e(type(exc).__name__)}: {_e(exc)}</p>"), None
    if raw is None:
        try:
            rows = store.manifest(dataset, fsv, day).rows if store.exists(dataset, fsv, day) else None
        except Exception as exc:
            return 503, _page(title, f"<p>the store could not be read: {_e(exc)}</p>"), None
        if rows is None:
            return 404, _page(title, f"<p>no validation result and no features for {day} (v={_e(fsv)}): the day "
                                     "has not been built, or it had no rows.</p>"), None
        return 200, _page(title, (
            f'<p class="verdict passed"><b>Passed</b>: the features of {day} (v={_e(fsv)}, {rows} rows) passed '
            "the project's suites and were written. Loopline stores the full Great Expectations result only for "
            "a day that fails.</p>")), None
    try:
        stored = json.loads(raw)
        summary = stored.get("summary") or {}
    except (ValueError, AttributeError) as exc:
        return 200, _page(title, f'<p class="error">the stored result is corrupt: {_e(exc)}</p>'), raw
    return 200, _page(title, _summary_html(summary, f"{day}.json")), raw


def _summary_html(summary: dict[str, Any], json_name: str) -> str:
    stats = summary.get("statistics") or {}
    verdict = "Passed" if summary.get("success") else "Failed"
    parts = [f'<p class="verdict {verdict.lower()}"><b>{verdict}</b>: suite <code>{_e(summary.get("suite"))}'
             f"</code> on {_e(summary.get('data_name'))} ({_e(summary.get('rows'))} rows) · "
             f"{_e(stats.get('successful_expectations'))} of {_e(stats.get('evaluated_expectations'))} "
             f'expectations met · <a href="{_e(json_name)}">full result (JSON)</a></p>']
    failures = summary.get("failures") or []
    if failures:
        parts.append("<table><tr><th>column</th><th>expectation</th><th>observed</th></tr>")
        for f in failures:
            parts.append(f"<tr><td>{_e(f.get('column') or '<table>')}</td><td>{_e(f.get('expectation'))}</td>"
                         f"<td>{_e(f.get('observed'))}</td></tr>")
        parts.append("</table>")
    return "".join(parts)
