"""services/dashboard_preview's pure parts on real inputs: deploy/grafana/povwatch.json read into panels, Grafana's
legend format, the preview Prometheus's scrape configuration, and the page drawn from given series. The page over
a real Prometheus and Chromium is tests/integration/test_dashboard_screenshot.py."""
from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from services.dashboard_preview.board import BoardError, parse_board
from services.dashboard_preview.page import Drawn, format_value, render_page
from services.dashboard_preview.prometheus import PrometheusError, Series, legend, query_range, scrape_config
from services.dashboard_preview.render import DEFAULT_BOARD, main


def _board_json() -> dict[str, object]:
    raw: dict[str, object] = json.loads(DEFAULT_BOARD.read_text(encoding="utf-8"))
    return raw


def test_the_real_dashboard_is_read_panel_by_panel() -> None:
    raw = _board_json()
    board = parse_board(DEFAULT_BOARD.read_text(encoding="utf-8"))
    panels = raw["panels"]
    assert isinstance(panels, list)
    assert len(board.panels) == len(panels)
    assert len(board.charts) == sum(1 for p in panels if p["type"] != "row")
    lag = next(p for p in board.charts if p.title == "Consumer lag per group")
    assert lag.queries[0].expr == "sum by (group) (povwatch_consumer_lag)"
    assert lag.queries[0].legend == "{{group}}"
    assert [(p.grid.y, p.grid.x) for p in board.panels] == sorted((p.grid.y, p.grid.x) for p in board.panels)
    assert next(p for p in board.charts if p.title.startswith("Ingest to rules")).unit == "s"


@pytest.mark.parametrize("text, problem", [
    ("{", "not JSON"),
    ('{"title": "x"}', "no \"panels\" list"),
    ('{"panels": [{"type": "stat", "title": "A"}]}', "panel 1 (A) has no gridPos"),
    ('{"panels": [{"type": "stat", "title": "A", "gridPos": {"x": 0, "y": 0, "w": 6, "h": 8},'
     ' "targets": [{"legendFormat": "x"}]}]}', "panel 1 (A): a target has no PromQL expr"),
])
def test_a_file_that_is_no_dashboard_is_named_as_such(text: str, problem: str) -> None:
    with pytest.raises(BoardError, match=re.escape(problem)):
        parse_board(text)


def test_legend_format_as_grafana_fills_it() -> None:
    labels = {"department": "medical-security", "feed": "hospitalization"}
    assert legend("{{department}} {{ feed }}", labels) == "medical-security hospitalization"
    assert legend("waiting: {{stage}}", labels) == "waiting: "
    assert legend("", {"__name__": "up", "job": "relay"}) == 'up{job="relay"}'
    assert legend("", {}) == "{}"


def test_scrape_config_lists_each_job_and_port() -> None:
    text = scrape_config({"monitor": [29101], "relay": [29102, 29103]}, interval_seconds=1)
    assert "scrape_interval: 1s" in text
    assert "  - job_name: monitor\n    static_configs:\n      - targets: ['127.0.0.1:29101']\n" in text
    assert "['127.0.0.1:29102', '127.0.0.1:29103']" in text
    with pytest.raises(ValueError, match="job name"):
        scrape_config({"bad job": [1]})


def test_values_carry_the_panel_unit() -> None:
    assert format_value(0.25, "s") == "0.25 s"
    assert format_value(1500, "rowsps") == "1500 rows/s"
    assert format_value(25_000, "short") == "25k"
    assert format_value(3, "bytes") == "3 bytes"


def test_the_page_has_one_panel_per_dashboard_panel_with_its_series() -> None:
    board = parse_board(DEFAULT_BOARD.read_text(encoding="utf-8"))
    lag = next(p for p in board.charts if p.title == "Consumer lag per group")
    overdue = next(p for p in board.charts if p.title == "Overdue case alerts")
    drawn = [Drawn(lag, (("it-casefeed", Series({"group": "it-casefeed"}, ((1000.0, 3.0), (1060.0, 7.0)))),)),
             Drawn(overdue, (("overdue", Series({}, ((1060.0, 2.0),))),))]
    page = render_page(board, drawn, 1000.0, 1060.0, "http://127.0.0.1:9")
    assert page.count('<section class="panel"') == len(board.charts)
    assert re.search(rf'data-panel-id="{lag.id}" data-kind="timeseries" data-series="1"', page)
    assert "<polyline" in page and "it-casefeed <b>7</b>" in page
    assert re.search(rf'data-panel-id="{overdue.id}" data-kind="stat" data-series="1"', page)
    assert '<div class="big">2</div>' in page
    assert page.count("No data") == len(board.charts) - 2
    assert page.count('<div class="row"') == len(board.panels) - len(board.charts)


def test_an_unreachable_prometheus_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(PrometheusError, match="does not answer"):
            query_range(f"http://127.0.0.1:{port}", "up", 0, 60, 15, timeout=2)
        assert main(["--prometheus", f"http://127.0.0.1:{port}", "--out", str(tmp_path / "p.html")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("dashboard preview: Prometheus at") and "\n" not in err
    (tmp_path / "bad.json").write_text("[]", encoding="utf-8")
    assert main(["--board", str(tmp_path / "bad.json"), "--out", str(tmp_path / "p.html")]) == 1
    assert capsys.readouterr().err.strip() == 'dashboard preview: not a Grafana dashboard: no "panels" list'
