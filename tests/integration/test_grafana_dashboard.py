"""deploy/grafana/povwatch.json: current with its declaration (deploy/grafana/dashboard.py), and every query names
metrics the services really export: the monitor, the case feed, the relay, the intake API and a connector watch
are started against the real broker, given a little work, and their live /metrics read. A metric renamed in the
code and not on the dashboard fails here, as does a label the panel groups by that the metric does not carry."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.ops_world import new_id, stays_file
from tests.integration.services_world import TOKENS, Running, start

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
EXPORTERS = ("monitor", "casefeed", "relay", "intake", "connector-watch")
HOSPITAL_DAY = dt.date(2026, 11, 1)


def _builder() -> Any:
    spec = importlib.util.spec_from_file_location("povwatch_grafana_dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def _queries() -> list[tuple[str, str]]:
    board = json.loads((GRAFANA / "povwatch.json").read_text(encoding="utf-8"))
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]


def _exported(port: int) -> dict[str, set[str]]:
    """Sample name -> the label names seen on it, plus every declared family's sample names (a labelled metric
    with no child yet shows only its HELP and TYPE lines)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                    "summary": ("_sum", "_count")}.get(family.type, ("",))
        for suffix in suffixes:
            names.setdefault(family.name + suffix, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


@pytest.fixture(scope="module")
def live_metrics(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    running: list[Running] = []
    try:
        for service in EXPORTERS:
            running.append(start(service, broker, tmp_path_factory.mktemp(service)))
        by_name = {r.service: r for r in running}
        watch = by_name["connector-watch"]
        assert watch.drop is not None
        # one valid stay (published) and one row with a bad ID number (rejected): both panels' series exist
        stays_file(watch.drop.parent / "2026-11.csv", [new_id()], first=HOSPITAL_DAY)
        text = (watch.drop.parent / "2026-11.csv").read_text(encoding="utf-8")
        bad = "测试,not-an-id,肺炎,2026-11-02,5,30000.00,15000.00,2026-11-07\n"
        (watch.drop / "2026-11.csv").write_text(text + bad, encoding="utf-8")
        body = json.dumps({"request_id": "dash-1"}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{by_name['intake'].port}/v1/self-declaration",
                                         data=body, method="POST", headers={
                                             "Authorization": f"Bearer {TOKENS['self-declaration']}",
                                             "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError:
            pass  # a refusal is counted too, by its code: that is what the panel shows
        deadline = time.monotonic() + 60
        merged: dict[str, set[str]] = {}
        while time.monotonic() < deadline:
            merged = {}
            for r in running:
                for name, labels in _exported(r.port).items():
                    merged.setdefault(name, set()).update(labels)
            if merged.get("povwatch_connector_rows_published_total") and merged.get("povwatch_intake_requests_total"):
                break
            time.sleep(0.5)  # sleep-ok: the polling interval of a wait with a deadline
        assert merged.get("povwatch_connector_rows_published_total"), "the connector published nothing in 60 s"
        assert merged.get("povwatch_intake_requests_total"), "the intake API counted no request in 60 s"
        yield merged
    finally:
        for r in running:
            r.child.stop()


def test_dashboard_file_is_current() -> None:
    assert (GRAFANA / "povwatch.json").read_text(encoding="utf-8") == _builder().render(), \
        "deploy/grafana/povwatch.json is stale: run `python deploy/grafana/dashboard.py`"


def test_dashboard_covers_what_operators_watch() -> None:
    exprs = " ".join(expr for _, expr in _queries())
    for metric in ("povwatch_connector_rows_published_total", "povwatch_alerts_total",
                   "povwatch_monitor_dead_letters_total", "povwatch_consumer_lag", "povwatch_events_pending",
                   "povwatch_events_unmatched_total", "povwatch_casefeed_alerts_consumed_total",
                   "povwatch_relay_outbox_pending", "povwatch_intake_requests_total",
                   "povwatch_connector_last_success_timestamp_seconds", "povwatch_cases_overdue",
                   "povwatch_feed_overdue"):
        assert metric in exprs, metric


def test_every_query_names_metrics_the_services_export(live_metrics: dict[str, set[str]]) -> None:
    problems = []
    for title, expr in _queries():
        for metric in re.findall(r"\bpovwatch_[a-z0-9_]+", expr):
            if metric not in live_metrics:
                problems.append(f"{title}: {metric} is exported by no service")
                continue
            grouped = [label.strip() for clause in re.findall(r"by \(([^)]*)\)", expr)
                       for label in clause.split(",") if label.strip() and label.strip() != "le"]
            seen = live_metrics[metric]
            if seen:  # labels are known once the metric has a child
                problems += [f"{title}: {metric} has no label {label!r} (has {sorted(seen)})"
                             for label in grouped if label not in seen]
    assert not problems, "\n".join(problems)


def test_the_check_would_catch_a_renamed_metric(live_metrics: dict[str, set[str]]) -> None:
    assert "povwatch_alerts_total" in live_metrics
    assert "povwatch_alerts_raised_total" not in live_metrics
    assert "rule" not in live_metrics["povwatch_intake_requests_total"]
    assert {"channel", "code"} <= live_metrics["povwatch_intake_requests_total"]
