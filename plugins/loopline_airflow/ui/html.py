"""The Loopline page as server-rendered HTML: per model the champion, the decisions, line plots of drift and
performance over time (inline SVG) and a drift heatmap.

Every value from the registry, a project file or a report is escaped; the page has no script and loads nothing
from the network (it is shown inside the Airflow UI, which may run without internet access, under a CSP that
allows inline styles and nothing else).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import quote

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#1f2933}
h1{font-size:1.4rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0}
th,td{border:1px solid #d9dee3;padding:.25rem .45rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.window{white-space:nowrap}.note{color:#52606d;font-style:italic}.error{color:#b42318}
.heat td{padding:0;text-align:center;min-width:2.2rem}.heat td a{display:block;padding:.2rem;color:inherit;
text-decoration:none}.heat th.day{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal}
.ok{background:#d3f2dc}.warn{background:#fde9b8}.bad{background:#f8c4bf}.na{background:#eceff1;color:#8a949e}
.corrupt{background:#b42318;color:#fff}.legend span{display:inline-block;padding:.1rem .5rem;margin-right:.3rem}
.scroll{overflow-x:auto;max-width:100%;direction:rtl}.scroll>table{direction:ltr;margin-left:0;margin-right:auto}.charts{display:flex;flex-wrap:wrap;gap:1rem}
.chart{flex:1 1 26rem;max-width:40rem}.chart h4{font-size:.9rem;margin:.2rem 0}.chart svg{width:100%;height:auto}
.chart .axis{stroke:#9aa5b1;stroke-width:1}.chart .grid{stroke:#e4e7eb;stroke-width:1}
.chart text{font-size:11px;fill:#52606d}.chart .line{fill:none;stroke:#1f6feb;stroke-width:1.6}
.chart .ref{fill:none;stroke:#b42318;stroke-width:1.2;stroke-dasharray:5 3}
.chart .band{stroke:#d97706;stroke-width:1;stroke-dasharray:3 3}.chart circle{fill:#1f6feb}
.chart .key{font-size:.78rem;color:#52606d;margin:.1rem 0}
"""

CHART_WIDTH, CHART_HEIGHT = 560, 190
_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 48, 12, 10, 26


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


def _version(model: Mapping[str, Any], version: Any) -> str:
    """A version number, linked to its MLflow model-version page when there is an MLflow UI."""
    from loopline_airflow.links import mlflow_model_version_url

    base = model.get("mlflow_ui")
    if not base or version in (None, ""):
        return _e(version)
    return f'<a href="{_e(mlflow_model_version_url(base, model["registered_model"], str(version)))}">{_e(version)}</a>'


def _run(model: Mapping[str, Any], run_id: Any) -> str:
    """The MLflow training run, linked when there is an MLflow UI."""
    from loopline_airflow.links import mlflow_run_url

    base = model.get("mlflow_ui")
    if not run_id:
        return "–"
    return f'<a href="{_e(mlflow_run_url(base, str(run_id)))}">run</a>' if base else _e(str(run_id)[:8])


def _dag_run(prefix: str, dag_id: Any, run_id: Any) -> str:
    """The Airflow DAG run that made a decision, linked to its page in the Airflow UI."""
    from urllib.parse import quote as q

    ui = prefix[: -len("/loopline")] if prefix.endswith("/loopline") else ""
    href = f"{ui}/dags/{q(str(dag_id), safe='')}/runs/{q(str(run_id), safe='')}"
    return f'<a href="{_e(href)}">{_e(dag_id)}<br>{_e(run_id)}</a>'


def _champion(registry: Mapping[str, Any], model: Mapping[str, Any] | None = None) -> str:
    model = model or {}
    champion = registry.get("champion")
    if not champion:
        return f'<p class="note">{_e(registry.get("message") or "no champion")}</p>'
    since = champion.get("since") or {}
    by = (f" by {_e(since.get('dag_id'))} run {_e(since.get('dag_run_id'))}" if since.get("dag_id")
          else " outside Airflow (loopline run)")
    since_text = (f"{_e(since.get('action'))}{by}, data through {_e(since.get('window_end') or '?')}" if since
                  else "no recorded change (alias set outside the gate)")
    trained = f" · trained on {_e(champion['trigger'])} trigger" if champion.get("trigger") else ""
    return (f'<p><b>Champion: version <span class="champion">{_e(champion["version"])}</span></b> · registered '
            f"{_e(champion.get('registered_at'))}{trained} · since: {since_text}<br>metrics: "
            f"{_metrics(champion.get('metrics') or {})} · MLflow: {_version(model, champion['version'])} "
            f"({_run(model, champion.get('run_id'))})</p>")


def _timeline(registry: Mapping[str, Any], model: Mapping[str, Any] | None = None, prefix: str = "") -> str:
    model = model or {}
    rows = registry.get("timeline") or []
    parts = ["<h3>Champion changes (newest first)</h3>"]
    if not rows:
        parts.append('<p class="note">no champion change recorded yet</p>')
    else:
        parts.append("<table><tr><th>action</th><th>version</th><th>previous</th><th>trigger</th><th>metric</th>"
                     "<th>candidate</th><th>champion</th><th>window</th><th>reason</th><th>candidate metrics</th>"
                     "<th>champion metrics</th><th>MLflow</th><th>DAG run</th></tr>")
        for r in rows:
            window = r.get("window") or {}
            parts.append(
                f"<tr><td>{_e(r.get('action'))}</td><td>{_version(model, r.get('version'))}</td>"
                f"<td>{_version(model, r.get('previous'))}</td><td>{_e(r.get('trigger') or '–')}</td>"
                f"<td>{_e(r.get('metric'))}</td><td>{_num(r.get('candidate'))}</td><td>{_num(r.get('champion'))}</td>"
                f"<td class=\"window\">{_e(window.get('validation_start'))} …<br>{_e(window.get('window_end'))}</td>"
                f"<td>{_e(r.get('reason'))}</td><td>{_metrics(r.get('candidate_metrics') or {})}</td>"
                f"<td>{_metrics(r.get('champion_metrics') or {})}</td><td>{_run(model, r.get('run_id'))}</td>"
                + (f"<td>{_dag_run(prefix, r.get('dag_id'), r.get('dag_run_id'))}</td></tr>" if r.get("dag_id")
                   else '<td class="note">outside Airflow</td></tr>'))
        parts.append("</table>")
    rejections = registry.get("rejections") or []
    if rejections:
        parts.append("<h3>Rejected candidates (newest first)</h3><table><tr><th>version</th><th>registered</th>"
                     "<th>trigger</th><th>against champion</th><th>reason</th><th>candidate metrics</th>"
                     "<th>champion metrics</th><th>MLflow</th></tr>")
        for r in rejections:
            parts.append(
                f"<tr><td>{_version(model, r.get('version'))}</td><td>{_e(r.get('registered_at'))}</td>"
                f"<td>{_e(r.get('trigger') or '–')}</td>"
                f"<td>{_version(model, r.get('champion_version'))}</td><td>{_e(r.get('reason'))}</td>"
                f"<td>{_metrics(r.get('candidate_metrics') or {})}</td>"
                f"<td>{_metrics(r.get('champion_metrics') or {})}</td><td>{_run(model, r.get('run_id'))}</td></tr>")
        parts.append("</table>")
    return "".join(parts)


def _heatmap(model: Mapping[str, Any], prefix: str) -> str:
    from loopline_airflow.ui.data import MAX_HEATMAP_DAYS

    drift = model.get("drift") or {}
    days = (drift.get("days") or [])[-MAX_HEATMAP_DAYS:]
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
    parts.append('<div class="scroll"><table class="heat"><tr><th>feature</th>')
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
    parts.append("</table></div>")
    for d in errors:
        parts.append(f'<p class="error">{_e(d["ds"])}: {_e(d["error"])}</p>')
    return "".join(parts)


# -- line plots -------------------------------------------------------------------------------------------------
Point = tuple[str, float | None]


def _segments(points: Sequence[Point]) -> list[list[tuple[str, float]]]:
    """Runs of consecutive measured points: a missing value breaks the line instead of bridging the gap."""
    runs: list[list[tuple[str, float]]] = [[]]
    for ds, value in points:
        if value is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((ds, value))
    return [r for r in runs if r]


def _nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    import math

    span = high - low
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _x_labels(first: str, last: str, x: Callable[[str], float]) -> list[str]:
    """The first and last day in full at the ends, and month starts between them where they fit (``2013-05``)."""
    import datetime as dt

    y = CHART_HEIGHT - 8
    if first == last:
        return [f'<text x="{x(first):.1f}" y="{y}" text-anchor="middle">{_e(first)}</text>']
    out = [f'<text x="{x(first):.1f}" y="{y}" text-anchor="start">{_e(first)}</text>',
           f'<text x="{x(last):.1f}" y="{y}" text-anchor="end">{_e(last)}</text>']
    full, short = 66.0, 44.0  # label widths in px at 11px
    left, right = x(first) + full + short / 2 + 4, x(last) - full - short / 2 - 4
    day, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    month = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    placed = -1e9
    while month < end:
        at = x(month.isoformat())
        if left <= at <= right and at - placed >= short + 12:
            out.append(f'<text x="{at:.1f}" y="{y}" text-anchor="middle">{month.isoformat()[:7]}</text>')
            placed = at
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return out


def line_chart(title: str, points: Sequence[Point], *, reference: Sequence[Point] = (),
               reference_label: str = "", lines: Sequence[tuple[float, str]] = (), digits: int = 4,
               floor_zero: bool = True) -> str:
    """An inline SVG line plot of ``(day, value)`` points (oldest first; None: not measured that day).

    ``reference`` is a second, dashed series (the validation metric); ``lines`` are horizontal thresholds
    ``(value, label)``. Every measured point carries a ``<title>`` with its day and value (the browser's tooltip).
    """
    import datetime as dt

    measured = [v for _, v in points if v is not None]
    ref = [v for _, v in reference if v is not None]
    if not measured:
        return ""
    days = [dt.date.fromisoformat(ds) for ds, _ in points]
    first, last = days[0].toordinal(), days[-1].toordinal()
    values = measured + ref + [v for v, _ in lines]
    low, high = (min(0.0, *values) if floor_zero else min(values)), max(values)
    if high - low < 1e-9:
        low, high = low - 0.5 if not floor_zero else low, high + 0.5
    pad = (high - low) * 0.08
    low, high = (low if floor_zero and low == 0 else low - pad), high + pad
    width, height = CHART_WIDTH - _PAD_LEFT - _PAD_RIGHT, CHART_HEIGHT - _PAD_TOP - _PAD_BOTTOM

    def x(ds: str) -> float:
        day = dt.date.fromisoformat(ds).toordinal()
        return _PAD_LEFT + (width * (day - first) / (last - first) if last > first else width / 2)

    def y(value: float) -> float:
        return _PAD_TOP + height * (1 - (value - low) / (high - low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
             f'aria-label="{_e(title)}">']
    for tick in _nice_ticks(low, high):
        parts.append(f'<line class="grid" x1="{_PAD_LEFT}" x2="{CHART_WIDTH - _PAD_RIGHT}" y1="{y(tick):.1f}" '
                     f'y2="{y(tick):.1f}"/><text x="{_PAD_LEFT - 4}" y="{y(tick) + 4:.1f}" text-anchor="end">'
                     f"{tick:g}</text>")
    parts.append(f'<line class="axis" x1="{_PAD_LEFT}" x2="{_PAD_LEFT}" y1="{_PAD_TOP}" y2="{_PAD_TOP + height}"/>'
                 f'<line class="axis" x1="{_PAD_LEFT}" x2="{CHART_WIDTH - _PAD_RIGHT}" y1="{_PAD_TOP + height}" '
                 f'y2="{_PAD_TOP + height}"/>')
    parts.extend(_x_labels(points[0][0], points[-1][0], x))
    for value, label in lines:
        parts.append(f'<line class="band" x1="{_PAD_LEFT}" x2="{CHART_WIDTH - _PAD_RIGHT}" y1="{y(value):.1f}" '
                     f'y2="{y(value):.1f}"><title>{_e(label)}</title></line>')
    for run in _segments(reference):  # a step line: the value holds until the next day's
        steps = [f"{x(run[0][0]):.1f},{y(run[0][1]):.1f}"]
        for (_, before), (ds, value) in itertools.pairwise(run):
            steps.append(f"{x(ds):.1f},{y(before):.1f} {x(ds):.1f},{y(value):.1f}")
        if len(run) == 1:
            steps.append(f"{x(run[0][0]) + 2:.1f},{y(run[0][1]):.1f}")
        coords = " ".join(steps)
        parts.append(f'<polyline class="ref" points="{coords}"><title>{_e(reference_label)}</title></polyline>')
    for run in _segments(points):
        if len(run) > 1:
            parts.append('<polyline class="line" points="'
                         + " ".join(f"{x(ds):.1f},{y(v):.1f}" for ds, v in run) + '"/>')
    radius = 2.2 if len(points) <= 120 else 1.4
    for ds, v in points:
        if v is not None:
            parts.append(f'<circle cx="{x(ds):.1f}" cy="{y(v):.1f}" r="{radius}"><title>{_e(ds)}: '
                         f"{_num(v, digits)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def _chart_box(css: str, title: str, svg: str, key: str, missing: str) -> str:
    body = svg or f'<p class="note">{_e(missing)}</p>'
    key_html = f'<p class="key">{key}</p>' if svg and key else ""
    return f'<div class="chart {css}"><h4>{_e(title)}</h4>{body}{key_html}</div>'


def _charts(model: Mapping[str, Any]) -> str:
    drift = model.get("drift") or {}
    days = [d for d in drift.get("days") or [] if not d.get("error")]
    head = "<h3>Over time</h3>"
    if not days:
        return head + f'<p class="note">{_e(drift.get("message") or "no drift report yet")}: nothing to plot</p>'
    bands = next((d["psi_bands"] for d in days if d.get("psi_bands")), [0.1, 0.2])
    column = next((d["prediction_column"] for d in days if d.get("prediction_column")), "score")
    pred = [(d["ds"], d.get("prediction_psi")) for d in days]
    pred_svg = line_chart("prediction drift", pred, lines=[(bands[0], f"PSI band {bands[0]:g}"),
                                                           (bands[1], f"PSI band {bands[1]:g}")])
    share = [(d["ds"], d.get("share_drifted")) for d in days]
    threshold = next((d["drift_share"] for d in reversed(days) if d.get("drift_share") is not None), None)
    share_lines = [] if threshold is None else [(threshold, f"drifted when ≥ {threshold:g}")]
    share_svg = line_chart("share of drifted features", share, lines=share_lines)
    perf_days = [d for d in days if isinstance(d.get("performance"), Mapping)]
    metric = next((d["performance"]["metric"] for d in reversed(perf_days)), None)
    perf = [(d["ds"], (d.get("performance") or {}).get("value")
             if (d.get("performance") or {}).get("metric") == metric else None) for d in days]
    validation = [(d["ds"], (d.get("performance") or {}).get("validation")
                   if (d.get("performance") or {}).get("metric") == metric else None) for d in days]
    perf_svg = line_chart("performance", perf, reference=validation, reference_label="validation metric",
                          floor_zero=False)
    notes = [(d["performance"] or {}).get("note") for d in reversed(perf_days) if (d["performance"] or {}).get("note")]
    perf_missing = ("no labelled performance yet" + (f": {notes[0]}" if notes else
                    ": the reports hold no performance (labels not arrived, or reports written before it was "
                    "recorded)"))
    higher = next((d["performance"].get("higher_is_better") for d in reversed(perf_days)), None)
    direction = "" if higher is None else (" (higher is better)" if higher else " (lower is better)")
    return (head + '<div class="charts">'
            + _chart_box("prediction", f"Prediction drift: PSI of {column}", pred_svg,
                         f"PSI per day; dashed: the bands {bands[0]:g} and {bands[1]:g}",
                         "no prediction drift measured yet (too few days scored by the champion in the window)")
            + _chart_box("share", "Share of drifted features", share_svg,
                         "share per day" + ("" if threshold is None else f"; dashed: the decision's threshold "
                                                                       f"{threshold:g}"),
                         "no share of drifted features in the reports")
            + _chart_box("performance", f"Champion performance on labelled days: {metric or 'metric'}{direction}",
                         perf_svg, "blue: on the labelled days of the window before each day; red dashed: the "
                         "champion's validation metric at training", perf_missing)
            + "</div>")


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
        parts.append(_missing_days(project, prefix))
        for model in project.get("models") or []:
            registry = model.get("registry") or {}
            parts.append(f'<section class="model" id="{_e(model["project"])}.{_e(model["model"])}">'
                         f"<h3>Model {_e(model['model'])} · registered model {_e(model['registered_model'])}</h3>")
            parts.append(_champion(registry, model))
            if registry.get("champion") and registry.get("message"):
                parts.append(f'<p class="note">{_e(registry["message"])}</p>')
            parts.append(_timeline(registry, model, prefix))
            parts.append(_charts(model))
            parts.append(_heatmap(model, prefix))
            parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


def _missing_days(project: Mapping[str, Any], prefix: str) -> str:
    """The project's days without features (their scoring and drift never start), linked to their GX result."""
    missing = project.get("missing_days") or {}
    if missing.get("message"):
        return f'<p class="note">{_e(missing["message"])}</p>'
    if not missing.get("first"):
        return ""
    span = f"{_e(missing['first'])} … {_e(missing['last'])}"
    if not missing.get("total"):
        return f'<p class="note" id="missing-days">Every day {span} has features.</p>'
    items = []
    for day in missing.get("days") or []:
        ds = _e(day["ds"])
        if day["why"] == "failed validation":
            link = f"{prefix}/validation/{quote(str(project['project']))}/{quote(str(day['ds']))}.html"
            items.append(f'{ds} (<a href="{_e(link)}">failed validation</a>)')
        else:
            items.append(f"{ds} (not built)")
    more = missing["total"] - len(items)
    tail = f", and {more} more" if more > 0 else ""
    return (f'<p class="missing" id="missing-days"><b>Days without features</b> ({missing["total"]} of {span}; '
            f"their scoring and drift runs never start): {', '.join(items)}{tail}</p>")


def render_message(title: str, message: str) -> str:
    """A small page that says why there is nothing to show."""
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{_e(title)}</title><style>{CSS}</style>"
            f"</head><body><h1>{_e(title)}</h1><p>{_e(message)}</p></body></html>")
