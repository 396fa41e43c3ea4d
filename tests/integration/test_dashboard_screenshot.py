"""The Grafana dashboard rendered over a demo run, without Grafana (issue #14, item 2): the monitor, the case feed,
the relay, the intake API and a connector watch run against the session's real broker; a roster is loaded and a
hospital file dropped into the watch's folder, so the monitor raises MEDICAL_EXPENSE alerts and the case feed opens
cases; the intake API is asked once. A real Prometheus (Debian's `prometheus` binary, on a loopback port of the
test's range) scrapes every service each second. Once its targets are up and the panels have samples, the preview
(services/dashboard_preview) draws deploy/grafana/povwatch.json from it, Chromium opens the page, and a screenshot
is saved to var/test-artifacts/grafana-dashboard.png (the HTML beside it).

Panels that are legitimately empty in such a demo are named in EMPTY_IN_DEMO with the reason; every other panel
must show at least one series with samples."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from plumbing.settings import Settings
from services.dashboard_preview.board import parse_board
from services.dashboard_preview.page import Drawn
from services.dashboard_preview.prometheus import PrometheusError, query_range, scrape_config, targets_up
from services.dashboard_preview.render import DEFAULT_BOARD, write_preview
from tests.integration.ops_world import World, households, new_id, roster_file, stays_file
from tests.integration.services_world import TOKENS, Running, start
from tests.integration.test_desk_browser import _chromium

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts"
PROMETHEUS_PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 960
EXPORTERS = ("monitor", "casefeed", "relay", "intake", "connector-watch")
HOSPITAL_DAY = dt.date(2026, 11, 1)

# panel title -> why a demo of a few minutes leaves it without a series
EMPTY_IN_DEMO = {
    "Feeds overdue (feed calendar)": "shows only feeds past their deadline (`== 1`); whether a feed of "
                                     "deploy/feeds-calendar.toml is overdue depends on today's date, not on the demo",
    "Dead letters per topic": "no message of the demo is undecodable, so the monitor's labelled counter has no child "
                              "(the case feed's unlabelled one is there, at 0)",
}


def _prometheus_binary() -> str:
    """Debian's prometheus server: on PATH (scripts/setup.sh installs the package), or extracted from its .deb by
    deploy/install-promtool.sh --extract; skipped only when neither works (no apt, no network)."""
    found = shutil.which("prometheus")
    if found:
        return found
    target = ROOT / "var" / "bin"
    local = target / "prometheus"
    if not local.exists():
        done = subprocess.run(["bash", str(ROOT / "deploy" / "install-promtool.sh"), "--extract"],
                              env={**os.environ, "PROMTOOL_BIN": str(target)}, capture_output=True, text=True,
                              timeout=600)
        if done.returncode != 0 or not local.exists():
            pytest.skip("the prometheus server binary is not installed and could not be extracted from Debian's "
                        f"prometheus package: {(done.stderr or done.stdout).strip().splitlines()[:1]}")
    return str(local)


def _get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def demo(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Running]]:
    running: list[Running] = []
    try:
        for service in EXPORTERS:
            running.append(start(service, broker, tmp_path_factory.mktemp(service)))
        yield running
    finally:
        for r in running:
            r.child.stop()


def _wave(demo: list[Running], work: Path, month: str, people: list[str], request_id: str) -> None:
    """A hospital file (the people's stays and one row with a bad ID number) dropped into the watch's folder, and
    one intake request."""
    by_name = {r.service: r for r in demo}
    watch = by_name["connector-watch"]
    assert watch.drop is not None
    staged = stays_file(work / f"{month}.csv", people, first=HOSPITAL_DAY)
    bad = "测试,not-an-id,肺炎,2026-11-02,5,30000.00,15000.00,2026-11-07\n"
    (watch.drop / f"{month}.csv").write_text(staged.read_text(encoding="utf-8") + bad, encoding="utf-8")
    request = urllib.request.Request(
        f"http://127.0.0.1:{by_name['intake'].port}/v1/intake/self-declaration",
        data=json.dumps({"request_id": request_id}).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKENS['self-declaration']}", "Content-Type": "application/json"})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError:
        pass  # a refused request is counted by its code too: the intake panel shows it either way


def _scraped(prometheus: str, expr: str) -> bool:
    now = time.time()
    return any(s.points for s in query_range(prometheus, expr, now - 5, now, 1))


def _give_work(prometheus: str, demo: list[Running], settings: Settings, work: Path) -> None:
    """A roster of four households, then two waves of work (their heads' stays, one person not on the roster, a bad
    row, an intake request). rate() sees no increase in a counter's first sample, and the watch's and the intake
    API's counters get their labelled child at the first row or request: the second wave, once Prometheus has
    scraped the first, is what their panels show moving."""
    hhs = households(f"DASH{time.time_ns() % 10**8}", 4)
    World(settings, work).roster(roster_file(work / "roster.csv", hhs), delta=True)
    _wave(demo, work, "2026-11", [h.members[0] for h in hhs[:2]] + [new_id()], "dash-shot-1")
    deadline = time.monotonic() + 60
    first = ("povwatch_connector_rows_rejected_total > 0", "sum(povwatch_intake_requests_total) > 0")
    while not all(_scraped(prometheus, expr) for expr in first):
        assert time.monotonic() < deadline, "Prometheus did not see the first wave in 60 s"
        time.sleep(0.5)  # sleep-ok: the polling interval of a wait with a deadline
    _wave(demo, work, "2026-12", [h.members[0] for h in hhs[2:]], "dash-shot-2")


@pytest.fixture(scope="module")
def prometheus(demo: list[Running], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("prometheus")
    binary = _prometheus_binary()
    config = work / "prometheus.yml"
    config.write_text(scrape_config({r.service: [r.port] for r in demo}), encoding="utf-8")
    base = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    log_path = work / "prometheus.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'data'}",
                             f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        up: dict[str, bool] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"prometheus exited ({proc.returncode}): {log_path.read_text()}"
            if _get_ok(f"{base}/-/ready"):
                try:
                    up = targets_up(base)
                except PrometheusError:
                    up = {}
                if len(up) == len(demo) and all(up.values()):
                    break
            time.sleep(0.3)  # sleep-ok: the polling interval of a wait with a deadline
        assert len(up) == len(demo) and all(up.values()), f"targets not all up in 60 s: {up}"
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def _with_data(drawn: list[Drawn]) -> set[str]:
    return {d.panel.title for d in drawn if any(s.points for _, s in d.series)}


def _moved(drawn: list[Drawn]) -> set[str]:
    """The panels with a sample above zero (the work itself, not only its series at 0)."""
    return {d.panel.title for d in drawn if any(v > 0 for _, s in d.series for _, v in s.points)}


# the demo's work must show as values above zero here, not only as series
MOVED_BY_DEMO = ("Rows published per department (connectors)", "Rows rejected per department and feed (dead-lettered)",
                 "Alerts out per rule", "Alerts in the last 24 h by severity", "Ingest to rules done, 95th percentile",
                 "Case feed: alerts consumed and cases opened", "Intake requests by channel and code")


def test_dashboard_screenshot_over_a_demo_run(prometheus: str, demo: list[Running], broker_settings: Settings,
                                              tmp_path: Path) -> None:
    scraping_since = time.time() - 10  # the page's window: from just before the work to the last render
    _give_work(prometheus, demo, broker_settings, tmp_path)
    board = parse_board(DEFAULT_BOARD.read_text(encoding="utf-8"))
    titles = {p.title for p in board.charts}
    assert set(EMPTY_IN_DEMO) <= titles, "EMPTY_IN_DEMO names a panel the dashboard no longer has"
    expected = titles - set(EMPTY_IN_DEMO)
    page = ARTIFACTS / "grafana-dashboard.html"
    deadline = time.monotonic() + 180
    drawn: list[Drawn] = []
    while time.monotonic() < deadline:  # rate() needs two samples in its window; alerts need the monitor's work
        drawn = write_preview(DEFAULT_BOARD, prometheus, page, minutes=(time.time() - scraping_since) / 60, step=1)
        if expected <= _with_data(drawn) and set(MOVED_BY_DEMO) <= _moved(drawn):
            break
        time.sleep(1)  # sleep-ok: the polling interval of a wait with a deadline
    assert not [d.error for d in drawn if d.error], [f"{d.panel.title}: {d.error}" for d in drawn if d.error]
    missing = sorted(expected - _with_data(drawn))
    shot = ARTIFACTS / "grafana-dashboard.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            view = browser.new_page(viewport={"width": 1600, "height": 1000})
            view.goto(page.as_uri())
            panels = view.locator("section.panel")
            assert panels.count() == len(board.charts)
            shown = {int(panels.nth(i).get_attribute("data-panel-id") or 0):
                     int(panels.nth(i).get_attribute("data-series") or 0) for i in range(panels.count())}
            view.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    print(f"\nscreenshot of the dashboard preview: {shot}")
    assert not missing, f"panels without data after 180 s of the demo: {missing}"
    assert set(MOVED_BY_DEMO) <= _moved(drawn), f"no work shown on {sorted(set(MOVED_BY_DEMO) - _moved(drawn))}"
    assert {p.id for p in board.charts} == set(shown)
    assert all(shown[p.id] > 0 for p in board.charts if p.title in expected)
    assert shot.stat().st_size > 20_000
