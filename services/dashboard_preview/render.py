"""Queries every panel of the board over a time window and writes the preview page: the I/O around board.py,
prometheus.py and page.py, and the command line (`python -m services.dashboard_preview`)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from services.dashboard_preview.board import Board, BoardError, parse_board
from services.dashboard_preview.page import Drawn, render_page
from services.dashboard_preview.prometheus import PrometheusError, legend, query_range

DEFAULT_BOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "povwatch.json"


def query_board(board: Board, base_url: str, start: float, end: float, step: float) -> list[Drawn]:
    """Each chart panel's queries run over [start, end]; a query Prometheus refuses is shown on its panel."""
    drawn = []
    for panel in board.charts:
        found = []
        error = ""
        for query in panel.queries:
            try:
                for series in query_range(base_url, query.expr, start, end, step):
                    found.append((legend(query.legend, series.labels), series))
            except PrometheusError as e:
                if "does not answer" in str(e):
                    raise
                error = str(e)
        drawn.append(Drawn(panel, tuple(found), error))
    return drawn


def write_preview(board_path: Path, base_url: str, out: Path, minutes: float, step: float | None = None,
                  end: float | None = None) -> list[Drawn]:
    board = parse_board(board_path.read_text(encoding="utf-8"))
    end = time.time() if end is None else end
    start = end - minutes * 60
    step = step or max(1.0, round(minutes * 60 / 240))  # about 240 points across the chart
    drawn = query_board(board, base_url, start, end, step)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(board, drawn, start, end, base_url), encoding="utf-8")
    return drawn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.dashboard_preview",
                                     description="Render the Grafana dashboard as a static HTML page from a "
                                                 "Prometheus server, without Grafana.")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090", help="Prometheus base URL")
    parser.add_argument("--board", type=Path, default=DEFAULT_BOARD, help="Grafana dashboard JSON")
    parser.add_argument("--minutes", type=float, default=15.0, help="time window ending now (default 15)")
    parser.add_argument("--step", type=float, default=None, help="query step in seconds (default: window/240)")
    parser.add_argument("--out", type=Path, default=Path("var/dashboard-preview.html"), help="HTML page to write")
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        print("dashboard preview: --minutes must be positive", file=sys.stderr)
        return 2
    try:
        drawn = write_preview(args.board, args.prometheus, args.out, args.minutes, args.step)
    except OSError as e:
        print(f"dashboard preview: cannot read {args.board} or write {args.out}: {e}", file=sys.stderr)
        return 1
    except (BoardError, PrometheusError) as e:
        print(f"dashboard preview: {e}", file=sys.stderr)
        return 1
    empty = sum(1 for d in drawn if not any(s.points for _, s in d.series))
    print(f"dashboard preview: {len(drawn)} panels ({empty} without data) written to {args.out}")
    return 0
