"""The Loopline page as server-rendered HTML: per model the champion, the decisions and a drift heatmap.

Every value from the registry, a project file or a report is escaped; the page has no script and loads nothing
from the network (it is shown inside the Airflow UI, which may run without internet access).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#1f2933}
h1{font-size:1.4rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0}
th,td{border:1px solid #d9dee3;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}.note{color:#52606d;font-style:italic}.error{color:#b42318}
.heat td{padding:0;text-align:center;min-width:2.2rem}.heat td a{display:block;padding:.2rem;color:inherit;
text-decoration:none}.heat th.day{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal}
.ok{background:#d3f2dc}.warn{background:#fde9b8}.bad{background:#f8c4bf}.na{background:#eceff1;color:#8a949e}
.corrupt{background:#b42318;color:#fff}.legend span{display:inline-block;padding:.1rem .5rem;margin-right:.3rem}
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _num(value: Any, digits: int = 4) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _metrics(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{_e(k)}={_num(v)}" for k, v in sorted(values.items())) or "–"


def psi_band(psi: float | None, bands: Sequence[float]) -> str:
    """CSS class of a PSI value: below the first band, between the bands, at or above the second."""
    if psi is None:
        return "na"
    if psi < bands[0]:
        return "ok"
    return "warn" if psi < bands[1] else "bad"


def _champion(registry: Mapping[str, Any]) -> str:
    champion = registry.get("champion")
    if not champion:
        return f'<p class="note">{_e(registry.get("message") or "no champion")}</p>'
    since = champion.get("since") or {}
    since_text = (
        f"{_e(since.get('action'))} by {_e(since.get('dag_id'))} run {_e(since.get('dag_run_id'))}, data through "
        f"{_e(since.get('window_end') or '?')}" if since else "no recorded change (alias set outside the gate)"
    )
    return (f'<p><b>Champion: version <span class="champion">{_e(champion["version"])}</span></b> · registered '
            f"{_e(champion.get('registered_at'))} · since: {since_text}<br>metrics: "
            f"{_metrics(champion.get('metrics') or {})}</p>")


def _timeline(registry: Mapping[str, Any]) -> str:
    rows = registry.get("timeline") or []
    parts = ["<h3>Champion changes (newest first)</h3>"]
    if not rows:
        parts.append('<p class="note">no champion change recorded yet</p>')
    else:
        parts.append("<table><tr><th>action</th><th>version</th><th>previous</th><th>metric</th><th>candidate</th>"
                     "<th>champion</th><th>window</th><th>reason</th><th>candidate metrics</th>"
                     "<th>champion metrics</th><th>run</th></tr>")
        for r in rows:
            window = r.get("window") or {}
            parts.append(
                f"<tr><td>{_e(r.get('action'))}</td><td>{_e(r.get('version'))}</td><td>{_e(r.get('previous'))}</td>"
                f"<td>{_e(r.get('metric'))}</td><td>{_num(r.get('candidate'))}</td><td>{_num(r.get('champion'))}</td>"
                f"<td>{_e(window.get('validation_start'))} … {_e(window.get('window_end'))}</td>"
                f"<td>{_e(r.get('reason'))}</td><td>{_metrics(r.get('candidate_metrics') or {})}</td>"
                f"<td>{_metrics(r.get('champion_metrics') or {})}</td>"
                f"<td>{_e(r.get('dag_id'))}<br>{_e(r.get('dag_run_id'))}</td></tr>")
        parts.append("</table>")
    rejections = registry.get("rejections") or []
    if rejections:
        parts.append("<h3>Rejected candidates (newest first)</h3><table><tr><th>version</th><th>registered</th>"
                     "<th>against champion</th><th>reason</th><th>candidate metrics</th><th>champion metrics</th></tr>")
        for r in rejections:
            parts.append(
                f"<tr><td>{_e(r.get('version'))}</td><td>{_e(r.get('registered_at'))}</td>"
                f"<td>{_e(r.get('champion_version'))}</td><td>{_e(r.get('reason'))}</td>"
                f"<td>{_metrics(r.get('candidate_metrics') or {})}</td>"
                f"<td>{_metrics(r.get('champion_metrics') or {})}</td></tr>")
        parts.append("</table>")
    return "".join(parts)


def _heatmap(model: Mapping[str, Any], prefix: str) -> str:
    drift = model.get("drift") or {}
    days = drift.get("days") or []
    head = "<h3>Drift: PSI per feature and day</h3>"
    if not days:
        return head + f'<p class="note">{_e(drift.get("message") or "no drift report yet")}</p>'
    base = f"{prefix}/reports/{quote(model['project'])}/{quote(model['model'])}"
    bands = next((d["psi_bands"] for d in days if d.get("psi_bands")), [0.1, 0.2])
    parts = [head, f'<p class="legend"><span class="ok">PSI &lt; {bands[0]:g}</span><span class="warn">'
                   f"&lt; {bands[1]:g}</span><span class=\"bad\">≥ {bands[1]:g}</span><span class=\"na\">not "
                   f"compared</span><span class=\"corrupt\">report unreadable</span> · showing "
                   f"{len(days)} of {drift.get('total_days', len(days))} days</p>"]
    errors = [d for d in days if d.get("error")]
    parts.append('<table class="heat"><tr><th>feature</th>')
    for d in days:
        parts.append(f'<th class="day">{_e(d["ds"])}</th>')
    parts.append("</tr><tr><th>drifted?</th>")
    for d in days:
        if d.get("error"):
            parts.append('<td class="corrupt" title="report unreadable">!</td>')
        else:
            mark = "yes" if d.get("drifted") else "no"
            parts.append(f'<td class="{"bad" if d.get("drifted") else "ok"}" '
                         f'title="{_e("; ".join(d.get("reasons") or []))}"><a href="{base}/{_e(d["ds"])}.html">'
                         f"{mark}</a></td>")
    parts.append("</tr>")
    for feature in drift.get("features") or []:
        parts.append(f"<tr><th>{_e(feature)}</th>")
        for d in days:
            if d.get("error"):
                parts.append('<td class="corrupt">!</td>')
                continue
            psi = (d.get("psi") or {}).get(feature)
            band = psi_band(psi, d.get("psi_bands") or bands)
            parts.append(f'<td class="{band}" title="{_e(feature)} {_e(d["ds"])}: PSI {_num(psi)}">'
                         f'<a href="{base}/{_e(d["ds"])}.html">{_num(psi, 2)}</a></td>')
        parts.append("</tr>")
    parts.append("</table>")
    for d in errors:
        parts.append(f'<p class="error">{_e(d["ds"])}: {_e(d["error"])}</p>')
    return "".join(parts)


def render_page(data: Mapping[str, Any], prefix: str, notice_html: str = "") -> str:
    """The whole page for :func:`loopline_airflow.ui.data.overview`'s result; ``prefix`` is the mount path;
    ``notice_html`` (already escaped) goes under the title (the filter of the DAG and DAG-run tabs)."""
    parts = ["<!doctype html><html><head><meta charset=\"utf-8\"><title>Loopline</title>",
             f"<style>{CSS}</style></head><body><h1>Loopline: models, champions and drift</h1>", notice_html,
             f'<p class="note">Read from the MLflow registry and the store when the page loads · '
             f'<a href="{prefix}/api/models">JSON</a></p>']
    if data.get("message"):
        parts.append(f'<p class="note">{_e(data["message"])}</p>')
    for project in data.get("projects") or []:
        parts.append(f"<h2>Project {_e(project['project'])}</h2>")
        if project.get("error"):
            parts.append(f'<p class="error">project file unusable: {_e(project["error"])}</p>')
        for model in project.get("models") or []:
            registry = model.get("registry") or {}
            parts.append(f'<section class="model" id="{_e(model["project"])}.{_e(model["model"])}">'
                         f"<h3>Model {_e(model['model'])} · registered model {_e(model['registered_model'])}</h3>")
            parts.append(_champion(registry))
            if registry.get("champion") and registry.get("message"):
                parts.append(f'<p class="note">{_e(registry["message"])}</p>')
            parts.append(_timeline(registry))
            parts.append(_heatmap(model, prefix))
            parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


def render_message(title: str, message: str) -> str:
    """A small page that says why there is nothing to show."""
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{_e(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{_e(title)}</h1><p>{_e(message)}</p></body></html>")
