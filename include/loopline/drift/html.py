"""Self-contained HTML rendering of a :class:`~loopline.drift.report.DriftReport` (inline CSS + SVG only)."""

from __future__ import annotations

import html
import math
import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopline.drift.config import DriftConfig
    from loopline.drift.report import DriftReport, FeatureDrift

_COLORS = {"none": "#2e7d32", "moderate": "#ef6c00", "major": "#c62828", "unknown": "#757575"}
_RANK = {"major": 3, "moderate": 2, "unknown": 1, "none": 0}
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:24px 0 8px}
.verdict{padding:12px 16px;border-radius:6px;color:#fff;font-weight:600;display:inline-block}
table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child,td.l,th.l{text-align:left}
.sev{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;border-radius:6px;padding:8px;width:560px}
.card h3{font-size:15px;margin:2px 0 4px}.muted{color:#666;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
.help{background:#fafafa;border:1px solid #e5e5e5;border-radius:6px;padding:8px 14px;font-size:13px;max-width:1100px}
.help p{margin:4px 0}.shift{font-size:12px;color:#444;margin-top:2px}
"""
_REF, _CUR = "#4c78a8", "#f58518"
_METRIC_NAMES = {"psi": "PSI", "kl": "KL", "js": "JS distance"}


def render_html(report: DriftReport, title: str = "Loopline drift report") -> str:
    """Render the report as one HTML document that needs nothing at view time.

    Args:
        report: The report.
        title: Page title.

    Returns:
        The HTML text (the report JSON is embedded too, in a ``<script type="application/json">`` block).
    """
    d = report.decision
    cfg = report.config
    esc = html.escape
    n_drifted = round(d.share_drifted * d.n_features)  # features not compared count as drifted
    if d.drifted:
        color, verdict = _COLORS["major"], f"DRIFT DETECTED — {n_drifted} of {d.n_features} features drifted"
    elif n_drifted:
        color, verdict = _COLORS["moderate"], (
            f"NO DATASET DRIFT — but {n_drifted} of {d.n_features} features drifted "
            f"({d.share_drifted:.0%}, below the {cfg.drift_share:.0%} share)"
        )
    else:
        color, verdict = _COLORS["none"], f"NO DRIFT — 0 of {d.n_features} features drifted"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='muted'>binning: <b>{esc(report.binning)}</b> · reference rows: {report.n_reference:,} · "
        f"current rows: {report.n_current:,}</p>",
        f"<div class='verdict' style='background:{color}'>{esc(verdict)}</div>",
        "<ul>", *(f"<li>{esc(r)}</li>" for r in d.reasons), *(f"<li>⚠ {esc(s)}</li>" for s in d.signals),
        *(f"<li>skipped {esc(k)}: {esc(v)}</li>" for k, v in report.skipped.items()), "</ul>",
    ]
    if d.performance_decay is not None:
        p = d.performance_decay
        parts.append(
            f"<p>Performance: {esc(p.metric)} {p.reference:.4f} → {p.current:.4f} (drop {p.drop:.4f}, "
            f"tolerated {p.max_drop}) — {'DECAYED' if p.decayed else 'ok'}</p>"
        )
    parts.append(_help(report.binning, cfg))
    metric = _METRIC_NAMES.get(cfg.severity_metric, cfg.severity_metric)
    parts.append(f"<h2>Metrics <span class='muted'>(most severe first, then by {esc(metric)})</span></h2>"
                 "<table><tr><th>feature</th><th class='l'>kind</th><th>PSI</th><th>KL</th><th>JS dist</th>"
                 "<th>JS div</th><th>JS base 2</th><th>missing ref → cur</th><th>out of range / unseen</th>"
                 "<th class='l'>severity</th></tr>")
    ranked = sorted(report.features.values(), key=lambda f: _sort_key(f, cfg))
    for f in ranked:
        parts.append(
            f"<tr><td><a href='#{_anchor(f.name)}'>{esc(f.name)}</a></td><td class='l'>{esc(f.kind)}</td>"
            f"<td>{_n(f.psi)}</td><td>{_n(f.kl)}</td><td>{_n(f.js)}</td><td>{_n(f.js_divergence)}</td>"
            f"<td>{_n(f.js_base2)}</td><td>{_p(f.missing_rate_reference)} → {_p(f.missing_rate_current)}</td>"
            f"<td>{_p(f.out_of_range_current)}</td><td class='l'>{_sev(f)}</td></tr>"
        )
    parts.append("</table>")
    parts.append(f"<h2>Distributions</h2><p class='legend muted'><span style='background:{_REF}'></span>reference"
                 f"<span style='background:{_CUR}'></span>current · bars are the share of each sample's rows "
                 "per bin; hover a bar for its exact value</p><div class='cards'>")
    parts.extend(_card(f) for f in ranked)
    parts.append("</div>")
    payload = report.to_json(indent=None).replace("</", "<\\/")
    parts.append(f"<script type='application/json' id='drift-report'>{payload}</script></body></html>")
    return "\n".join(parts)


def _sort_key(f: FeatureDrift, cfg: DriftConfig) -> tuple[int, float, str]:
    score = {"psi": f.psi, "js": f.js, "kl": f.kl}.get(cfg.severity_metric, f.psi)
    return (-_RANK.get(f.severity, 0), -(score if not math.isnan(score) else -1.0), f.name)


def _help(binning: str, cfg: DriftConfig) -> str:
    low, high = cfg.psi_bands
    metric = _METRIC_NAMES.get(cfg.severity_metric, cfg.severity_metric)
    chip = "<span class='sev' style='background:{}'>{}</span>".format
    shares = "smoothed shares" if binning == "reference" else "shares whose empty bins are filled as Evidently does"
    bins = (
        "Numeric bins are equal-width between robust bounds of the reference (its min and max unless some values "
        "are far out); <b>&lt; lo</b> / <b>&gt; hi</b> hold the values beyond them in either sample and "
        "<b>(missing)</b> NaN/None; categorical bins are the reference categories plus one for unseen values."
        if binning == "reference" else
        "Bins follow Evidently 0.7: one per distinct value when the reference has at most 20, else Sturges "
        "edges over both samples; NaN and ±inf are dropped (their rates are in the table)."
    )
    return (
        "<div class='help'><p><b>How to read this.</b> Each feature's severity comes from its "
        f"<b>{metric}</b>: {chip(_COLORS['none'], 'none')} below {low}, {chip(_COLORS['moderate'], 'moderate')} "
        f"from {low}, {chip(_COLORS['major'], 'major')} from {high}; a feature counts as drifted at "
        f"<b>{html.escape(cfg.drift_severity)}</b> or above. The dataset is flagged when at least "
        f"{cfg.drift_share:.0%} of the features drift, or for the other reasons listed above (key features, "
        "prediction drift, performance decay).</p>"
        f"<p>PSI = Σ (p − q)·ln(p/q) and KL = KL(reference ‖ current), both on {shares}; JS distance is "
        "√(Jensen–Shannon divergence), natural log (0 … 0.83), JS base 2 the same in bits (0 … 1). "
        f"{bins}</p></div>"
    )


def _card(f: FeatureDrift) -> str:
    esc = html.escape
    notes = "".join(f"<div class='muted'>{esc(n)}</div>" for n in f.notes)
    return (
        f"<div class='card' id='{_anchor(f.name)}'><h3>{esc(f.name)} {_sev(f)}</h3>"
        f"<div class='muted'>PSI {_n(f.psi)} · KL {_n(f.kl)} · JS {_n(f.js)} · {esc(f.kind)} · missing "
        f"{_p(f.missing_rate_reference)} → {_p(f.missing_rate_current)} · out of range / unseen "
        f"{_p(f.out_of_range_current)}</div>{_svg(f)}{_shifts(f)}{notes}</div>"
    )


def _shifts(f: FeatureDrift, k: int = 3) -> str:
    """The ``k`` bins whose share moved most, named (the chart cannot label every bin)."""
    labels, p, q = f.bin_labels, f.reference_proportions, f.current_proportions
    if not labels or not p or not q:
        return ""
    order = sorted(range(len(labels)), key=lambda i: -abs(q[i] - p[i]))[:k]
    items = []
    for i in order:
        if q[i] == p[i]:
            continue
        unseen = " (empty in reference)" if p[i] == 0 and q[i] > 0 else ""
        items.append(f"<b>{html.escape(_short(labels[i], 28))}</b> {_p(p[i])} → {_p(q[i])}{unseen}")
    return f"<div class='shift'>Largest shifts: {'; '.join(items)}</div>" if items else ""


def _svg(f: FeatureDrift, width: int = 550, height: int = 230, max_bins: int = 40) -> str:
    labels, p, q = f.bin_labels, f.reference_proportions, f.current_proportions
    if not labels or not p or not q:
        return "<p class='muted'>no histogram (empty sample)</p>"
    hidden = 0
    if len(labels) > max_bins:  # keep the largest bins readable; the JSON has them all
        keep = sorted(range(len(labels)), key=lambda i: -(p[i] + q[i]))[:max_bins]
        keep.sort()
        hidden = len(labels) - max_bins
        labels, p, q = [labels[i] for i in keep], [p[i] for i in keep], [q[i] for i in keep]
    top = _nice_ceiling(max(*p, *q, 1e-12))
    left, right, upper, lower = 62, 8, 24, 70
    plot_w, plot_h = width - left - right, height - upper - lower
    base = upper + plot_h
    slot = plot_w / len(labels)
    bar = max(slot * 0.42, 0.5)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
           f"aria-label='{html.escape(f.name)}: reference and current share per bin'>"]
    for t in range(5):  # y axis: gridlines and percentage labels at 0, ¼, ½, ¾ and the top
        v = top * t / 4
        y = base - plot_h * t / 4
        out.append(f"<line x1='{left}' x2='{width - right}' y1='{y:.1f}' y2='{y:.1f}' "
                   f"stroke='{'#999' if t == 0 else '#eee'}'/>")
        out.append(f"<text x='{left - 4}' y='{y + 3:.1f}' font-size='10' fill='#555' "
                   f"text-anchor='end'>{_axis_pct(v, top)}</text>")
    step = max(1, math.ceil(len(labels) / 16))  # at most 16 x labels, evenly spaced
    for i, (label, a, b) in enumerate(zip(labels, p, q, strict=True)):
        x = left + i * slot + (slot - 2 * bar) / 2
        for j, (v, color) in enumerate(((a, _REF), (b, _CUR))):
            h = plot_h * v / top
            tip = html.escape(f"{label}: {'reference' if j == 0 else 'current'} {v:.4%}")
            out.append(f"<rect x='{x + j * bar:.1f}' y='{base - h:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                       f"fill='{color}'><title>{tip}</title></rect>")
        if i % step == 0:
            cx = left + (i + 0.5) * slot
            out.append(f"<text x='{cx:.1f}' y='{base + 12}' font-size='10' fill='#333' text-anchor='end' "
                       f"transform='rotate(-35 {cx:.1f} {base + 12})'>{html.escape(_short(label, 14))}</text>")
    lx = width - right - 150
    out.append(f"<rect x='{lx}' y='6' width='10' height='10' fill='{_REF}'/>"
               f"<text x='{lx + 14}' y='15' font-size='11'>reference</text>"
               f"<rect x='{lx + 80}' y='6' width='10' height='10' fill='{_CUR}'/>"
               f"<text x='{lx + 94}' y='15' font-size='11'>current</text>")
    notes = []
    if step > 1:
        notes.append(f"1 bin in {step} labelled")
    if hidden:
        notes.append(f"{hidden} smallest bins not drawn")
    if notes:
        out.append(f"<text x='{left}' y='15' font-size='10' fill='#666'>{html.escape('; '.join(notes))}</text>")
    out.append("</svg>")
    return "".join(out)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k that is ≥ ``value`` (a readable top for the y axis)."""
    exponent = math.floor(math.log10(value))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * 10**exponent >= value * (1 - 1e-12):
            return m * 10**exponent
    return 10.0 ** (exponent + 1)


def _axis_pct(v: float, top: float) -> str:
    """``v`` as a percentage with just enough decimals for the tick spacing ``top / 4``."""
    tick = top * 100 / 4
    digits = next((d for d in range(5) if abs(round(tick, d) - tick) < 1e-9 * max(tick, 1e-12)), 4)
    return f"{v * 100:.{digits}f}%"


def _short(label: str, n: int) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _sev(f: FeatureDrift) -> str:
    return f"<span class='sev' style='background:{_COLORS.get(f.severity, '#757575')}'>{html.escape(f.severity)}</span>"


def _anchor(name: str) -> str:
    """A stable element id (the same on every run, unlike ``hash``)."""
    return "f-" + "".join(c if c.isalnum() else "-" for c in name) + f"-{zlib.crc32(name.encode()) % 10_000}"


def _n(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.4f}"


def _p(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.1%}"
