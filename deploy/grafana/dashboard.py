"""Writes deploy/grafana/povwatch.json, the operators' Grafana dashboard: `python deploy/grafana/dashboard.py`.

One place declares the panels (title, unit, PromQL); Grafana's JSON is derived from it, so a panel is added or a
query changed here, and tests/integration/test_grafana_dashboard.py checks the file is current and that every
query names metrics the services really export (read from each service's live /metrics)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("povwatch.json")
DATASOURCE = {"type": "prometheus", "uid": "povwatch-prometheus"}  # deploy/compose/grafana/provisioning


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or "stat", "table"
    description: str = ""
    width: int = 12
    thresholds: tuple[tuple[float, str], ...] = field(default=())


ROWS: tuple[tuple[str, tuple[Panel, ...]], ...] = (
    ("Departments in (部门数据)", (
        Panel("Rows published per department (connectors)",
              (("sum by (department) (rate(povwatch_connector_rows_published_total[5m]))", "{{department}}"),),
              unit="rowsps", description="Rows each department's connector watch published as events."),
        Panel("Rows rejected per department and feed (dead-lettered)",
              (("sum by (department, feed) (rate(povwatch_connector_rows_rejected_total[5m]))",
                "{{department}} {{feed}}"),),
              unit="rowsps", description="Rejected rows go to dlq.<department> with their reason; the file's "
                                         "summary lists them for the data officer."),
        Panel("Connector last success per source",
              (("time() - max by (source) (povwatch_connector_last_success_timestamp_seconds)", "{{source}}"),),
              unit="s", kind="table", description="Seconds since a source last completed a file or a poll. A "
                                                  "department that sends daily should stay under a day.",
              thresholds=((0, "green"), (86400, "orange"), (172800, "red"))),
        Panel("Feeds overdue (feed calendar)",
              (("max by (department, feed) (povwatch_feed_overdue) == 1", "{{department}} {{feed}}"),),
              kind="table", description="Feeds past their deadline in deploy/feeds-calendar.toml without an event: "
                                        "a department that stopped sending. `povwatch feeds status` has the dates."),
        Panel("Events consumed by the monitor per topic",
              (("sum by (topic) (rate(povwatch_events_consumed_total[5m]))", "{{topic}}"),),
              unit="ops"),
    )),
    ("Monitor (监测)", (
        Panel("Alerts out per rule",
              (("sum by (rule) (rate(povwatch_alerts_total[5m]))", "{{rule}}"),), unit="ops"),
        Panel("Alerts in the last 24 h by severity",
              (("sum by (severity) (increase(povwatch_alerts_total[24h]))", "{{severity}}"),), kind="stat"),
        Panel("Dead letters per topic",
              (("sum by (topic) (rate(povwatch_monitor_dead_letters_total[5m]))", "monitor: {{topic}}"),
               ("sum(rate(povwatch_casefeed_dead_letters_total[5m]))", "casefeed: alerts")),
              unit="ops", description="Messages that could not be decoded or stored; each is on a dlq.* topic."),
        Panel("Consumer lag per group",
              (("sum by (group) (povwatch_consumer_lag)", "{{group}}"),), unit="short",
              description="Messages not yet consumed and committed. Growing for 15 minutes raises "
                          "PovwatchConsumerLagNotShrinking."),
        Panel("Events waiting for their person or household",
              (("sum by (stage) (povwatch_events_pending)", "waiting: {{stage}}"),
               ("sum by (topic) (rate(povwatch_events_unmatched_total[5m]))", "unmatched: {{topic}}")),
              description="Events that arrived before their roster record wait; past the grace period they are "
                          "listed as unmatched (`povwatch monitor unmatched`)."),
        Panel("Ingest to rules done, 95th percentile",
              (("histogram_quantile(0.95, sum by (le) (rate(povwatch_event_latency_seconds_bucket[5m])))", "p95"),),
              unit="s"),
        Panel("Registry ready and recoveries",
              (("min(povwatch_registry_ready)", "registry ready"),
               ("sum by (stage) (increase(povwatch_monitor_recoveries_total[15m]))", "recoveries: {{stage}}")),
              description="Recoveries are batches abandoned on a transient failure and replayed."),
    )),
    ("Cases (案件)", (
        Panel("Case feed: alerts consumed and cases opened",
              (("sum by (topic) (rate(povwatch_casefeed_alerts_consumed_total[5m]))", "consumed: {{topic}}"),
               ("rate(povwatch_cases_opened_total[5m])", "cases opened")), unit="ops"),
        Panel("Relay: outbox waiting and published",
              (("povwatch_relay_outbox_pending", "outbox waiting"),
               ("sum by (topic) (rate(povwatch_relay_published_total[5m]))", "published: {{topic}}")),
              description="The case DB's outbox (statuses after LABEL, comparison requests) on its way to Kafka."),
        Panel("Intake requests by channel and code",
              (("sum by (channel, code) (rate(povwatch_intake_requests_total[5m]))", "{{channel}} {{code}}"),),
              unit="reqps"),
        Panel("Overdue case alerts",
              (("sum(povwatch_cases_overdue)", "overdue"),), kind="stat", width=6,
              description="Case alerts not acknowledged within POVWATCH_CASE_VERIFY_DAYS of their case opening.",
              thresholds=((0, "green"), (1, "orange"), (20, "red"))),
        Panel("Case DB up", (("min(povwatch_casefeed_db_up)", "case DB"),), kind="stat", width=6,
              thresholds=((0, "red"), (1, "green"))),
    )),
)


def _panel(panel: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    steps = [{"color": colour, "value": None if i == 0 else value}
             for i, (value, colour) in enumerate(panel.thresholds or ((0, "green"),))]
    return {
        "id": pid, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": DATASOURCE, "gridPos": {"h": 8, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps}},
                        "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if panel.kind == "timeseries" else {},
        "targets": [{"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": expr, "legendFormat": legend,
                     **({"format": "table", "instant": True} if panel.kind == "table" else {})}
                    for i, (expr, legend) in enumerate(panel.queries)],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    pid = 1
    for title, row in ROWS:
        panels.append({"id": pid, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid += 1
        y += 1
        x = 0
        for panel in row:
            if x + panel.width > 24:
                x, y = 0, y + 8
            panels.append(_panel(panel, pid, x, y))
            pid += 1
            x += panel.width
        y += 8
    return {
        "uid": "povwatch-hub", "title": "povwatch 防返贫监测 hub", "tags": ["povwatch"], "timezone": "browser",
        "schemaVersion": 39, "version": 1, "editable": False, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "panels": panels,
        "templating": {"list": []}, "annotations": {"list": []},
    }


def render() -> str:
    return json.dumps(dashboard(), ensure_ascii=False, indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"written {OUT}", file=sys.stderr)
