"""Issue #11's case side on the desk in a real headless Chromium (as tests/integration/test_desk_browser.py: Debian's
chromium driven by Playwright, `povwatch desk` as a child process on a SQLite case DB), with the world of
tests/casework_world.py: the worklist's "逾期" mark, an alert reported by two departments ("公安、卫健 印证") with
each event's department, a cadre's report shown in full, a township case - and a user of another county who sees
none of it. A screenshot of the case page goes to var/test-artifacts/desk-casework.png.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from plumbing.processes import ChildProcess
from services.casedb.database import open_database
from tests.casework_world import (
    DEATH_REASON,
    OVERDUE_H1,
    OVERDUE_H2,
    REPORT_TEXT,
    TOWNSHIP1,
    CaseworkWorld,
    prepare_casework,
)
from tests.integration.test_desk_browser import (  # noqa: F401  (browser: a fixture, used by name)
    ARTIFACTS,
    SECRET,
    _free_port,
    _login,
    _wait_ready,
    browser,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, CaseworkWorld]]:
    workdir = tmp_path_factory.mktemp("desk-casework")
    url = f"sqlite:///{workdir / 'cases.db'}"
    store = open_database(url)
    try:
        world = prepare_casework(store, workdir)
    finally:
        store.close()
    port = _free_port()
    child = ChildProcess(["desk"], env={"POVWATCH_CASE_DB": url, "POVWATCH_DESK_PORT": str(port),
                                       "POVWATCH_DESK_HOST": "127.0.0.1", "POVWATCH_DESK_SECRET": SECRET,
                                       "POVWATCH_DESK_INSECURE_COOKIES": "1", "POVWATCH_CASE_VERIFY_DAYS": "15"},
                         log_path=workdir / "desk.log")
    try:
        _wait_ready(port, child)
        yield f"http://127.0.0.1:{port}", world
    finally:
        code = child.stop()
        assert code == 0, f"povwatch desk exited {code} on SIGTERM:\n{child.tail(30)}"


def test_departments_and_deadlines_in_chromium(desk: tuple[str, CaseworkWorld], browser: Browser) -> None:  # noqa: F811
    base, world = desk
    page = _login(browser, base, "cun")
    row = page.locator(f"tr[data-case='{world.base.case1}']")
    mark = row.locator(".overdue")
    expect(mark).to_be_visible()
    expect(mark).to_have_text(f"逾期 {OVERDUE_H1} 天")
    expect(mark).to_have_css("background-color", "rgb(176, 0, 32)")  # the red mark
    expect(page.locator(f"tr[data-case='{world.base.case2}']")).to_have_count(0)

    row.locator("a").click()
    expect(page.locator("#overdue")).to_contain_text(f"逾期 {OVERDUE_H1} 天")
    corroborated = page.locator(".departments .corroborated")
    expect(corroborated).to_have_count(1)
    expect(corroborated).to_have_text("公安、卫健 印证")
    death = page.locator("tr", has_text=DEATH_REASON)
    expect(death.locator("li.event[data-department=public-security] .source")).to_have_text("公安")
    expect(death.locator("li.event[data-department=health] .source")).to_have_text("卫健")
    report = page.locator("td.reason", has_text="走访记录续")
    expect(report).to_be_visible()
    shown = report.inner_text().replace("\r", "")
    assert REPORT_TEXT in shown and shown.rstrip().endswith("[报告全文结束]")  # the whole text, line break and all
    box = report.bounding_box()
    assert box is not None and box["height"] > 60  # wrapped over several lines, not cut to one
    expect(page.locator("tr", has_text="走访记录续").locator("li.event .source")).to_have_text("基层干部排查")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "desk-casework.png"), full_page=True)

    # acknowledging the overdue alert clears the mark
    page.locator(f"#ack-{world.h1_medical_alert} button").click()
    expect(page.locator("#message")).to_have_text("已确认预警")
    expect(page.locator("#overdue")).to_have_count(0)
    page.goto(f"{base}/cases")
    expect(page.locator(f"tr[data-case='{world.base.case1}'] .overdue")).to_have_count(0)
    page.context.close()


def test_another_county_sees_none_of_it_in_chromium(desk: tuple[str, CaseworkWorld],
                                                    browser: Browser) -> None:  # noqa: F811
    base, world = desk
    page = _login(browser, base, "jinghe")
    expect(page.locator(f"tr[data-case='{world.base.case2}'] .overdue")).to_have_text(f"逾期 {OVERDUE_H2} 天")
    expect(page.locator(f"tr[data-case='{world.base.case1}']")).to_have_count(0)
    expect(page.locator(f"tr[data-case='{world.township_case}']")).to_have_count(0)
    response = page.goto(f"{base}/cases/{world.base.case1}")
    assert response is not None and response.status == 404
    for secret in ("印证", "逾期", "公安", "基层干部排查"):
        expect(page.locator("body")).not_to_contain_text(secret)
    page.context.close()

    page = _login(browser, base, "xiang")  # the township sees its township-wide case
    row = page.locator(f"tr[data-case='{world.township_case}']")
    expect(row).to_contain_text(f"乡镇 {TOWNSHIP1}")
    expect(row).to_contain_text("集中返乡")
    page.context.close()
