"""deploy/grafana/povwatch.json read into what the preview draws: rows, panels with their grid position, unit and
queries (PromQL and legend format). Pure: no I/O beyond parsing the text it is given."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class BoardError(ValueError):
    """The dashboard file is not a Grafana dashboard the preview can read (the message names the problem)."""


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str  # Grafana's legendFormat: {{label}} placeholders


@dataclass(frozen=True)
class Grid:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class BoardPanel:
    id: int
    kind: str  # "row", "timeseries", "stat", "table"
    title: str
    unit: str
    grid: Grid
    queries: tuple[Query, ...]
    description: str = ""


@dataclass(frozen=True)
class Board:
    title: str
    panels: tuple[BoardPanel, ...]  # rows included, in gridPos order

    @property
    def charts(self) -> tuple[BoardPanel, ...]:
        return tuple(p for p in self.panels if p.kind != "row")


def _grid(raw: Any, where: str) -> Grid:
    if not isinstance(raw, dict):
        raise BoardError(f"{where} has no gridPos")
    try:
        return Grid(int(raw["x"]), int(raw["y"]), int(raw["w"]), int(raw["h"]))
    except (KeyError, TypeError, ValueError) as e:
        raise BoardError(f"{where}: gridPos needs integer x, y, w and h ({e})") from None


def _panel(raw: Any, index: int) -> BoardPanel:
    if not isinstance(raw, dict):
        raise BoardError(f"panel {index + 1} is not an object")
    title = str(raw.get("title", ""))
    where = f"panel {index + 1} ({title or 'untitled'})"
    kind = str(raw.get("type", ""))
    if not kind:
        raise BoardError(f"{where} has no type")
    defaults = raw.get("fieldConfig", {}).get("defaults", {}) if isinstance(raw.get("fieldConfig"), dict) else {}
    queries = []
    for target in raw.get("targets", []) or []:
        if not isinstance(target, dict) or not isinstance(target.get("expr"), str) or not target["expr"].strip():
            raise BoardError(f"{where}: a target has no PromQL expr")
        queries.append(Query(target["expr"], str(target.get("legendFormat", ""))))
    return BoardPanel(id=int(raw.get("id", index + 1)), kind=kind, title=title,
                      unit=str(defaults.get("unit", "short")), grid=_grid(raw.get("gridPos"), where),
                      queries=tuple(queries), description=str(raw.get("description", "")))


def parse_board(text: str) -> Board:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise BoardError(f"not JSON: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("panels"), list):
        raise BoardError("not a Grafana dashboard: no \"panels\" list")
    panels = [_panel(p, i) for i, p in enumerate(raw["panels"])]
    panels.sort(key=lambda p: (p.grid.y, p.grid.x))
    return Board(str(raw.get("title", "dashboard")), tuple(panels))
