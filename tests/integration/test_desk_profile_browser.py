"""The household profile and the risk-elimination checks (P70) on the desk, in a real headless Chromium (Debian's
`chromium`, driven by Playwright: tests/integration/test_desk_browser.py's browser and log-in), against `povwatch
desk` as a child process on a SQLite case DB (tests/desk_world.py) in which household H1 has been carried to LABEL
and has a profile (as the case feed stores profiles.household).

  * the village user sees the profile block on H1's case page and on /households/H1: members with their ages
    (names from the case DB), the latest fact per domain under the connectors' Chinese headers, the income against
    the county's line, the open alerts;
  * with the page open and NOMINATE_NOTICE's form on it, a newer profile puts the income below the line: the form
    is refused (409) with the plan's reason on the page, and the refusal is in the audit log;
  * a county user of another county asking for H1's profile by its id gets a 404 without any of H1's data.
A screenshot of the case page goes to var/test-artifacts/desk-profile.png.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal

import pytest
from playwright.sync_api import Browser, expect

from plumbing.processes import ChildProcess
from services.casedb.database import open_database
from services.casedb.store import CaseStore
from services.cases.profiles import record_profiles
from services.cases.store import Cases
from tests.desk_world import H1, HEAD1_NAME, SPOUSE1_NAME, VILLAGE1, World, prepare
from tests.integration.test_desk_browser import ARTIFACTS, SECRET, _free_port, _login, _wait_ready, browser  # noqa: F401

pytestmark = pytest.mark.integration

UPDATED = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC)


def _profile(store: CaseStore, head: str, *, income: str, year: int, updated: dt.datetime) -> None:
    record_profiles(store, [(H1, {
        "household_id": H1, "village_code": VILLAGE1, "income_year": year, "income_per_capita": Decimal(income),
        "updated_at": updated, "facts": [
            {"domain": "住房", "topic": "events.housing.house-safety", "department": "housing", "feed": "住房安全",
             "event_id": "ev-house", "person_key": head, "day": dt.date(year, 6, 22),
             "values": {"cause": "NATURAL_DISASTER", "safety_grade": "B", "damage": "MINOR",
                        "event_date": f"{year}-06-22"}},
            {"domain": "饮水", "topic": "events.water.drinking-water", "department": "water", "feed": "安全饮水",
             "event_id": "ev-water", "person_key": None, "day": dt.date(year, 5, 2),
             "values": {"indicators": "QUALITY、SUPPLY_RATE"}},
            {"domain": "收入", "topic": "events.statistics.household-income", "department": "statistics",
             "feed": "住户收入", "event_id": f"ev-income-{income}", "person_key": head, "day": dt.date(year, 1, 1),
             "values": {"year": str(year), "household_size": "2", "net_income": str(Decimal(income) * 2),
                        "per_capita_net_income": income}}]})])


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, World, str, str, int]]:
    workdir = tmp_path_factory.mktemp("desk-profile")
    url = f"sqlite:///{workdir / 'cases.db'}"
    store = open_database(url)
    try:
        world = prepare(store, workdir)
        cases = Cases(store)
        today = cases.today()
        for user, step, days in (("cun", "APPLY", 12), ("cun", "PUBLIC_NOTICE", 11), ("xiang", "TOWNSHIP_VERIFY", 5),
                                 ("xian", "COUNTY_CONFIRM", 4), ("xian", "DATA_COMPARE", 3), ("xian", "LABEL", 2)):
            cases.advance(user, world.case1, step, on=today - dt.timedelta(days=days), authorised=step == "APPLY")
        head = cases.household_profile(None, H1, audited=False).members[0].person_key
        year = today.year - 1
        _profile(store, head, income="9000.00", year=year, updated=UPDATED)  # at the line: NOMINATE_NOTICE allowed
    finally:
        store.close()
    port = _free_port()
    child = ChildProcess(["desk"], env={"POVWATCH_CASE_DB": url, "POVWATCH_DESK_PORT": str(port),
                                       "POVWATCH_DESK_HOST": "127.0.0.1", "POVWATCH_DESK_SECRET": SECRET,
                                       "POVWATCH_DESK_INSECURE_COOKIES": "1"},
                         log_path=workdir / "desk.log")
    try:
        _wait_ready(port, child)
        yield f"http://127.0.0.1:{port}", world, url, head, year
    finally:
        code = child.stop()
        assert code == 0, f"povwatch desk exited {code} on SIGTERM:\n{child.tail(30)}"


def test_the_profile_and_a_refused_nomination_in_chromium(desk: tuple[str, World, str, str, int],
                                                          browser: Browser) -> None:  # noqa: F811
    base, world, url, head, year = desk
    page = _login(browser, base, "cun")
    page.goto(f"{base}/cases/{world.case1}")
    block = page.locator("#profile")
    expect(block).to_be_visible()
    members = block.locator("#profile-members tbody tr")
    expect(members).to_have_count(2)
    expect(members.nth(0)).to_contain_text(HEAD1_NAME)
    expect(members.nth(0)).to_contain_text("户主")
    expect(members.nth(0)).to_contain_text("岁")
    expect(members.nth(1)).to_contain_text(SPOUSE1_NAME)
    expect(block.locator("#profile-labour")).to_have_text("有劳动能力")
    facts = block.locator("#profile-facts tbody tr")
    expect(facts).to_have_count(3)
    expect(facts.nth(0)).to_have_attribute("data-domain", "收入")  # the plan's order of domains
    expect(block.locator("tr[data-domain=住房]")).to_contain_text("住建 · 住房安全")
    expect(block.locator("tr[data-domain=住房]")).to_contain_text("事由: 自然灾害")
    expect(block.locator("tr[data-domain=住房]")).to_contain_text("损毁程度: 一般损坏")
    expect(block.locator("tr[data-domain=住房]")).to_contain_text(f"{HEAD1_NAME} (户主)")
    expect(block.locator("tr[data-domain=饮水]")).to_contain_text("问题指标: 水质、供水保证率")
    expect(block.locator("#profile-income")).to_have_attribute("data-below", "no")
    expect(block.locator("#profile-income")).to_contain_text("本县标准 9000 元")
    expect(block.locator("#profile-alerts tr[data-rule=MEDICAL_EXPENSE]")).to_contain_text("医疗支出")
    form = page.locator("#step-NOMINATE_NOTICE")
    expect(form).to_be_visible()

    # meanwhile the statistics survey team's newer figure arrives: below the line
    store = open_database(url)
    try:
        _profile(store, head, income="8200.00", year=year, updated=UPDATED + dt.timedelta(days=40))
    finally:
        store.close()
    form.locator("input[name=note]").fill("收入稳定, 提名消除风险")
    with page.expect_response(lambda r: r.url.endswith(f"/cases/{world.case1}/steps/NOMINATE_NOTICE")) as answer:
        form.locator("button[type=submit]").click()
    assert answer.value.status == 409
    expect(page.locator("#error")).to_contain_text(f"人均纯收入 8200 元，低于 {year} 年本县标准 9000 元")
    expect(page.locator("#error")).to_contain_text("提名公示未办理")
    expect(page.locator("#profile-income")).to_have_attribute("data-below", "yes")
    expect(page.locator(".refused[data-step=NOMINATE_NOTICE]")).to_contain_text("P70")
    expect(page.locator("#step-NOMINATE_NOTICE")).to_have_count(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "desk-profile.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000

    response = page.goto(f"{base}/households/{H1}")
    assert response is not None and response.status == 200
    expect(page.locator("#profile")).to_contain_text(HEAD1_NAME)
    expect(page.locator("#open-case")).to_have_attribute("href", f"/cases/{world.case1}")
    page.context.close()

    store = open_database(url)
    try:
        audit = Cases(store).audit_for_household(H1)
    finally:
        store.close()
    refused = [a for a in audit if a.action == "REFUSED"]
    assert [a.user_name for a in refused] == ["cun"] and f"低于 {year} 年本县标准 9000 元" in (refused[0].detail or "")
    assert any(a.action == "VIEW_HOUSEHOLD" and a.user_name == "cun" for a in audit)


def test_another_countys_user_cannot_read_the_profile_in_chromium(desk: tuple[str, World, str, str, int],
                                                                  browser: Browser) -> None:  # noqa: F811
    base, world, url, _, _ = desk
    page = _login(browser, base, "jinghe")
    for path in (f"/households/{H1}", f"/cases/{world.case1}"):
        response = page.goto(f"{base}{path}")
        assert response is not None and response.status == 404, path
        expect(page.locator("#problem")).to_contain_text("不在您的辖区内")
        expect(page.locator("main")).not_to_contain_text(HEAD1_NAME)
        expect(page.locator("#profile")).to_have_count(0)
    page.context.close()
    store = open_database(url)
    try:
        audit = Cases(store).audit_for_household(H1)
    finally:
        store.close()
    assert any(a.action == "REFUSED" and a.user_name == "jinghe" and "outside the region 652722" in (a.detail or "")
               for a in audit)
