"""Self-contained HTML rendering of a :class:`~loopline.drift.report.DriftReport` (inline CSS + SVG only)."""

from __future__ import annotations

import html
import json
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopline.drift.report import DriftReport, FeatureDrift

_COLORS = {"none": "#2e7d32", "moderate": "#ef6c00", "major": "#c62828", "unknown": "#757575"}
_CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:24px 0 8px}
.verdict{padding:12px 16px;border-radius:6px;color:#fff;font-weight:600;display:inline-block}
table{border-collapse:collapse;margin:8px 0}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child,td.l{text-align:left}
.sev{color:#fff;border-radius:4px;padding:1px 6px;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:16px}.card{border:1px solid #ddd;border-radius:6px;padding:8px;width:540px}
.card h3{font-size:15px;margin:2px 0 4px}.muted{color:#666;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
"""
_REF, _CUR = "#4c78a8", "#f58518"


def render_html(report: DriftReport, title: str = "Loopline drift report") -> str:
    """Render the report as one HTML document that needs nothing at view time.

    Args:
        report: The report.
        title: Page title.

    Returns:
        The HTML text (the report JSON is embedded too, in a ``<script type="application/json">`` block).
    """
    d = report.decision
    color = _COLORS["major"] if d.drifted else _COLORS["none"]
    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f"<p class='muted'>binning: <b>{esc(report.binning)}</b> · reference rows: {report.n_reference:,} · "
        f"current rows: {report.n_current:,} · PSI bands: {report.config.psi_bands[0]} / "
        f"{report.config.psi_bands[1]} · drifted at ≥ {esc(report.config.drift_severity)}</p>",
        f"<div class='verdict' style='background:{color}'>{'DRIFT DETECTED' if d.drifted else 'NO DRIFT'} — "
        f"{d.share_drifted:.0%} of {d.n_features} features drifted</div>",
        "<ul>", *(f"<li>{esc(r)}</li>" for r in d.reasons), *(f"<li>⚠ {esc(s)}</li>" for s in d.signals),
        *(f"<li>skipped {esc(k)}: {esc(v)}</li>" for k, v in report.skipped.items()), "</ul>",
    ]
    if d.performance_decay is not None:
        p = d.performance_decay
        parts.append(
            f"<p>Performance: {esc(p.metric)} {p.reference:.4f} → {p.current:.4f} (drop {p.drop:.4f}, "
            f"tolerated {p.max_drop}) — {'DECAYED' if p.decayed else 'ok'}</p>"
        )
    parts.append("<h2>Metrics</h2><table><tr><th>feature</th><th>kind</th><th>PSI</th><th>KL</th><th>JS dist</th>"
                 "<th>JS div</th><th>JS base 2</th><th>missing ref → cur</th><th>out of range / unseen</th>"
                 "<th>severity</th></tr>")
    ranked = sorted(report.features.values(), key=lambda f: -(-1.0 if math.isnan(f.psi) else f.psi))
    for f in ranked:
        parts.append(
            f"<tr><td><a href='#f-{_anchor(f.name)}'>{esc(f.name)}</a></td><td class='l'>{esc(f.kind)}</td>"
            f"<td>{_n(f.psi)}</td><td>{_n(f.kl)}</td><td>{_n(f.js)}</td><td>{_n(f.js_divergence)}</td>"
            f"<td>{_n(f.js_base2)}</td><td>{_p(f.missing_rate_reference)} → {_p(f.missing_rate_current)}</td>"
            f"<td>{_p(f.out_of_range_current)}</td><td>{_sev(f)}</td></tr>"
        )
    parts.append("</table>")
    parts.append(f"<h2>Distributions</h2><p class='legend muted'><span style='background:{_REF}'></span>reference"
                 f"<span style='background:{_CUR}'></span>current</p><div class='cards'>")
    parts.extend(_card(f) for f in ranked)
    parts.append("</div>")
    payload = report.to_json(indent=None).replace("</", "<\\/")
    parts.append(f"<script type='application/json' id='drift-report'>{payload}</script></body></html>")
    return "\n".join(parts)


def _card(f: FeatureDrift) -> str:
    esc = html.escape
    notes = "".join(f"<div class='muted'>{esc(n)}</div>" for n in f.notes)
    return (
        f"<div class='card' id='f-{_anchor(f.name)}'><h3>{esc(f.name)} {_sev(f)}</h3>"
        f"<div class='muted'>PSI {_n(f.psi)} · KL {_n(f.kl)} · JS {_n(f.js)} · {esc(f.kind)}</div>"
        f"{_svg(f)}{notes}</div>"
    )


def _svg(f: FeatureDrift, width: int = 520, height: int = 190, max_bins: int = 40) -> str:
    labels, p, q = f.bin_labels, f.reference_proportions, f.current_proportions
    if not labels or not p or not q:
        return "<p class='muted'>no histogram (empty sample)</p>"
    if len(labels) > max_bins:  # keep the largest bins readable; the JSON has them all
        keep = sorted(range(len(labels)), key=lambda i: -(p[i] + q[i]))[:max_bins]
        keep.sort()
        labels, p, q = [labels[i] for i in keep], [p[i] for i in keep], [q[i] for i in keep]
    top = max(*p, *q, 1e-12)
    plot_h, base = height - 60, height - 50
    slot = (width - 20) / len(labels)
    bar = max(slot / 2 - 1, 0.5)
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img'>"]
    for i, (label, a, b) in enumerate(zip(labels, p, q, strict=True)):
        x = 10 + i * slot
        for j, (v, color) in enumerate(((a, _REF), (b, _CUR))):
            h = plot_h * v / top
            tip = html.escape(f"{label}: {'reference' if j == 0 else 'current'} {v:.4%}")
            out.append(f"<rect x='{x + j * bar:.1f}' y='{base - h:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                       f"fill='{color}'><title>{tip}</title></rect>")
        if len(labels) <= 16:
            text = html.escape(label if len(label) <= 14 else label[:13] + "…")
            out.append(f"<text x='{x + slot / 2:.1f}' y='{base + 12}' font-size='9' text-anchor='end' "
                       f"transform='rotate(-35 {x + slot / 2:.1f} {base + 12})'>{text}</text>")
    out.append(f"<line x1='10' x2='{width - 10}' y1='{base}' y2='{base}' stroke='#999'/>")
    out.append(f"<text x='12' y='12' font-size='10' fill='#666'>max {top:.1%}</text></svg>")
    return "".join(out)


def _sev(f: FeatureDrift) -> str:
    return f"<span class='sev' style='background:{_COLORS.get(f.severity, '#757575')}'>{html.escape(f.severity)}</span>"


def _anchor(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name) + f"-{abs(hash(json.dumps(name))) % 10_000}"


def _n(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.4f}"


def _p(v: float) -> str:
    return "n/a" if math.isnan(v) else f"{v:.1%}"
