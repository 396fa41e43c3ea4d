"""The preview page: every panel of the board drawn from its series into one static HTML page, laid out by gridPos
(Grafana's 24 columns) with CSS grid. Time series are inline SVG line charts, stats the last value in large type,
tables the last value per series; a panel with no series says "No data", as Grafana does. Pure: the series come in
already queried. Each panel carries data-panel-id, data-kind and data-series (its series count) for tests."""
from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass

from services.dashboard_preview.board import Board, BoardPanel
from services.dashboard_preview.prometheus import Series

ROW_PX = 34  # one gridPos height unit
COLOURS = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#fade2a", "#37872d",
           "#c4162a")
UNITS = {"s": " s", "ops": " ops/s", "rowsps": " rows/s", "reqps": " req/s", "short": "", "percent": "%"}
WIDTH, HEIGHT, LEFT, BOTTOM = 600.0, 190.0, 84.0, 20.0


@dataclass(frozen=True)
class Drawn:
    """One panel's query results: (legend, series) in query order, or the error the query met."""
    panel: BoardPanel
    series: tuple[tuple[str, Series], ...]
    error: str = ""


def format_value(value: float, unit: str) -> str:
    magnitude = abs(value)
    if magnitude >= 1e6:
        text = f"{value / 1e6:.3g}M"
    elif magnitude >= 1e4:
        text = f"{value / 1e3:.3g}k"
    elif magnitude == 0 or magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude < 0.01:
        text = f"{value:.2g}"
    else:
        text = f"{value:.3g}"
    return text + UNITS.get(unit, f" {unit}")


def _clock(t: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(t, tz).strftime("%H:%M:%S")


def _chart(drawn: Drawn, start: float, end: float, tz: dt.tzinfo) -> str:
    values = [v for _, s in drawn.series for _, v in s.points]
    low, high = min(values + [0.0]), max(values + [0.0])
    if high == low:
        high = low + 1.0
    span = max(end - start, 1e-9)
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - 8

    def x(t: float) -> float:
        return LEFT + (t - start) / span * plot_w

    def y(v: float) -> float:
        return 8 + (high - v) / (high - low) * plot_h

    parts = [f'<svg class="chart" viewBox="0 0 {WIDTH:.0f} {HEIGHT:.0f}" preserveAspectRatio="none" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for k in range(5):  # horizontal grid with the value axis
        v = low + (high - low) * k / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">'
                     f'{html.escape(format_value(v, drawn.panel.unit))}</text>')
    for k in range(4):  # time axis
        t = start + span * k / 3
        anchor = ("start", "middle", "middle", "end")[k]
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - 4}" class="axis" text-anchor="{anchor}">'
                     f'{_clock(t, tz)}</text>')
    for i, (_, series) in enumerate(drawn.series):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in series.points)
        if len(series.points) == 1:
            t, v = series.points[0]
            parts.append(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"/>')
        elif points:
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2" '
                         f'vector-effect="non-scaling-stroke"/>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(drawn: Drawn) -> str:
    items = []
    for i, (name, series) in enumerate(drawn.series):
        last = format_value(series.points[-1][1], drawn.panel.unit) if series.points else "–"
        items.append(f'<li><span class="swatch" style="background:{COLOURS[i % len(COLOURS)]}"></span>'
                     f'{html.escape(name or "value")} <b>{html.escape(last)}</b></li>')
    return f'<ul class="legend">{"".join(items)}</ul>'


def _stat(drawn: Drawn) -> str:
    cells = []
    for name, series in drawn.series:
        last = format_value(series.points[-1][1], drawn.panel.unit) if series.points else "–"
        cells.append(f'<div class="stat"><div class="big">{html.escape(last)}</div>'
                     f'<div class="name">{html.escape(name)}</div></div>')
    return f'<div class="stats">{"".join(cells)}</div>'


def _table(drawn: Drawn) -> str:
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>"
                   f"{html.escape(format_value(s.points[-1][1], drawn.panel.unit)) if s.points else '–'}</td></tr>"
                   for name, s in drawn.series)
    return f'<table><tr><th>series</th><th>last value</th></tr>{rows}</table>'


def _body(drawn: Drawn, start: float, end: float, tz: dt.tzinfo) -> str:
    if drawn.error:
        return f'<div class="error">{html.escape(drawn.error)}</div>'
    if not any(s.points for _, s in drawn.series):
        return '<div class="nodata">No data</div>'
    if drawn.panel.kind == "stat":
        return _stat(drawn)
    if drawn.panel.kind == "table":
        return _table(drawn)
    return _chart(drawn, start, end, tz) + _legend(drawn)


def _place(panel: BoardPanel) -> str:
    g = panel.grid
    return f"grid-column:{g.x + 1} / span {g.w};grid-row:{g.y + 1} / span {g.h}"


def render_page(board: Board, drawn: Sequence[Drawn], start: float, end: float, source: str,
                tz: dt.tzinfo = dt.UTC) -> str:
    by_id = {d.panel.id: d for d in drawn}
    cells = []
    for panel in board.panels:
        if panel.kind == "row":
            cells.append(f'<div class="row" style="{_place(panel)}">{html.escape(panel.title)}</div>')
            continue
        d = by_id.get(panel.id, Drawn(panel, ()))
        unit = UNITS.get(panel.unit, panel.unit).strip()
        cells.append(
            f'<section class="panel" data-panel-id="{panel.id}" data-kind="{html.escape(panel.kind)}" '
            f'data-series="{sum(1 for _, s in d.series if s.points)}" style="{_place(panel)}" '
            f'title="{html.escape(panel.description)}"><h2>{html.escape(panel.title)}'
            f'{f" <small>({html.escape(unit)})</small>" if unit else ""}</h2>{_body(d, start, end, tz)}</section>')
    window = f"{_clock(start, tz)} – {_clock(end, tz)} {dt.datetime.fromtimestamp(end, tz):%Z %Y-%m-%d}"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(board.title)} (preview)</title>
<style>
body {{ background:#111217; color:#ccccdc; font-family:"Noto Sans CJK SC","Noto Sans",sans-serif; margin:0;
  padding:12px; font-size:13px; }}
header {{ display:flex; justify-content:space-between; align-items:baseline; margin-bottom:8px; }}
header h1 {{ font-size:18px; margin:0; color:#fff; }}
.board {{ display:grid; grid-template-columns:repeat(24, 1fr); grid-auto-rows:{ROW_PX}px; gap:6px; }}
.row {{ font-weight:bold; font-size:15px; color:#fff; align-self:end; border-bottom:1px solid #2c3235; }}
.panel {{ background:#181b1f; border:1px solid #2c3235; border-radius:3px; padding:6px 8px; overflow:hidden;
  display:flex; flex-direction:column; min-width:0; }}
.panel h2 {{ font-size:13px; margin:0 0 4px; color:#fff; font-weight:500; white-space:nowrap; overflow:hidden;
  text-overflow:ellipsis; }}
.panel h2 small {{ color:#8e8e8e; font-weight:normal; }}
.chart {{ width:100%; flex:1; min-height:110px; }}
.chart .grid {{ stroke:#2c3235; stroke-width:1; vector-effect:non-scaling-stroke; }}
.chart .axis {{ fill:#8e8e8e; font-size:11px; }}
.legend {{ list-style:none; margin:2px 0 0; padding:0; display:flex; flex-wrap:wrap; gap:2px 12px; font-size:12px;
  max-height:45%; overflow:hidden; }}
.swatch {{ display:inline-block; width:12px; height:4px; margin-right:4px; vertical-align:middle; }}
.stats {{ display:flex; flex:1; gap:12px; align-items:center; justify-content:space-around; }}
.stat .big {{ font-size:34px; color:#73bf69; font-weight:500; text-align:center; }}
.stat .name {{ text-align:center; color:#8e8e8e; }}
table {{ border-collapse:collapse; width:100%; }}
th, td {{ text-align:left; padding:3px 6px; border-bottom:1px solid #2c3235; }}
.nodata {{ flex:1; display:flex; align-items:center; justify-content:center; color:#8e8e8e; font-size:16px; }}
.error {{ color:#f2495c; }}
</style></head><body>
<header><h1>{html.escape(board.title)}</h1><span>{html.escape(window)} · from {html.escape(source)} ·
preview without Grafana (services/dashboard_preview)</span></header>
<main class="board">
{chr(10).join(cells)}
</main></body></html>
"""
