"""The web desk in a real headless Chromium (Debian's `chromium` package, driven by Playwright with
executable_path: Playwright's own browser downloads are never used), against `povwatch desk` running as a child
process on a SQLite case DB prepared through the case operations (tests/desk_world.py).

The case of household H1 is carried from APPLY to LABEL by the users whose role each step needs, each logging in
in a fresh browser context: the village user applies (with the signed authorisation) and posts the public notice
dated five days back with the on-date field; the township user is refused TOWNSHIP_VERIFY dated the day before the
notice has stood five days, then verifies today; the county user confirms, sees DATA_COMPARE refused while public
security has not answered, completes it with an override reason, and labels the household. The page is checked
after each step, and a screenshot of the case page is saved to var/test-artifacts/desk-case.png.

No Kafka here: the desk reads and writes the case DB only (the outbox row that LABEL writes is the relay's).
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from plumbing.processes import ChildProcess
from services.casedb.database import open_database
from services.cases.store import Cases
from tests.desk_world import HEAD1_NAME, PASSWORD, REASON1, SPOUSE1_NAME, World, prepare, request_comparisons

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "var" / "test-artifacts"
SECRET = "integration-desk-secret-0123456789abcdefghij"


def _chromium() -> str:
    for candidate in (os.environ.get("POVWATCH_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("Debian's chromium is not installed: run `bash deploy/install-chromium.sh` (scripts/setup.sh does)",
                pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(port: int, child: ChildProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive:
            raise AssertionError(f"povwatch desk exited ({child.proc.returncode}):\n{child.tail(30)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # sleep-ok: the polling interval of a wait with a deadline
    raise AssertionError(f"povwatch desk not ready after {timeout:.0f}s:\n{child.tail(30)}")


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, World, str, ChildProcess]]:
    workdir = tmp_path_factory.mktemp("desk")
    url = f"sqlite:///{workdir / 'cases.db'}"
    store = open_database(url)
    try:
        world = prepare(store, workdir)
        request_comparisons(store, world.case1)
    finally:
        store.close()
    port = _free_port()
    child = ChildProcess(["desk"], env={"POVWATCH_CASE_DB": url, "POVWATCH_DESK_PORT": str(port),
                                       "POVWATCH_DESK_HOST": "127.0.0.1", "POVWATCH_DESK_SECRET": SECRET,
                                       "POVWATCH_DESK_INSECURE_COOKIES": "1"},
                         log_path=workdir / "desk.log")
    try:
        _wait_ready(port, child)
        yield f"http://127.0.0.1:{port}", world, url, child
    finally:
        code = child.stop()
        assert code == 0, f"povwatch desk exited {code} on SIGTERM:\n{child.tail(30)}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=_chromium(), headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield chromium
        finally:
            chromium.close()


def _login(browser: Browser, base: str, name: str) -> Page:
    """A fresh browser context (no cookies) logged in as `name`, on the worklist."""
    page = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{base}/cases")
    expect(page).to_have_url(f"{base}/login?next=%2Fcases")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("#login")
    expect(page).to_have_url(f"{base}/cases")
    expect(page.locator("#who")).to_contain_text(name)
    return page


def _take(page: Page, step: str, *, on: dt.date | None = None, note: str | None = None,
          override: str | None = None) -> None:
    form = page.locator(f"#step-{step}")
    expect(form).to_be_visible()
    if on is not None:
        form.locator("input[name=on]").fill(on.isoformat())
    if note is not None:
        form.locator("input[name=note]").fill(note)
    if override is not None:
        form.locator("input[name=override]").fill(override)
    form.locator("button[type=submit]").click()


def _desk_today(page: Page, step: str) -> dt.date:
    """The desk's today (the prefecture's date), as the step form's date field gives it."""
    return dt.date.fromisoformat(page.locator(f"#step-{step} input[name=on]").get_attribute("max") or "")


def test_a_case_from_apply_to_label_in_chromium(desk: tuple[str, World, str, ChildProcess],
                                                browser: Browser) -> None:
    base, world, url, child = desk
    case_url = f"{base}/cases/{world.case1}"

    # --- the village: APPLY with the signed authorisation, PUBLIC_NOTICE five days back ----------------------------
    page = _login(browser, base, "cun")
    rows = page.locator("#worklist tbody tr")
    expect(rows).to_have_count(1)  # H2's case lies in another county
    page.click(f"tr[data-case='{world.case1}'] a")
    expect(page).to_have_url(case_url)
    for text in (HEAD1_NAME, SPOUSE1_NAME, REASON1, "医疗支出", "未纳入监测"):
        expect(page.locator("main")).to_contain_text(text)
    expect(page.locator("#current-step")).to_have_text("尚无步骤")
    today = _desk_today(page, "APPLY")
    notice_day = today - dt.timedelta(days=5)
    expect(page.locator("#step-APPLY input[name=authorised]")).to_be_checked()
    _take(page, "APPLY", on=notice_day - dt.timedelta(days=1), note="村委会代为申请, 户主签字授权")
    expect(page.locator("#message")).to_have_text("已完成: 申请")
    expect(page.locator("#current-step")).to_contain_text("申请")
    expect(page.locator("#authorised")).to_contain_text("已签署")
    # the next step needs the township: the village user is told why it cannot take it after PUBLIC_NOTICE
    _take(page, "PUBLIC_NOTICE", on=notice_day, note="村务公开栏公示")
    expect(page.locator("#message")).to_have_text("已完成: 公示")
    expect(page.locator("#notice-on")).to_have_text(notice_day.isoformat())
    expect(page.locator("#step-TOWNSHIP_VERIFY")).to_have_count(0)
    expect(page.locator(".refused[data-step=TOWNSHIP_VERIFY]")).to_contain_text("township")
    page.context.close()

    # --- the township: refused the day before the notice has stood five days, then verified today ----------------
    page = _login(browser, base, "xiang")
    page.goto(case_url)
    _take(page, "TOWNSHIP_VERIFY", on=today - dt.timedelta(days=1), note="入户核实")
    expect(page.locator("#error")).to_contain_text("must stand 5 days")
    expect(page.locator("#current-step")).to_contain_text("公示")
    _take(page, "TOWNSHIP_VERIFY", on=today, note="入户核实, 无异议")
    expect(page.locator("#message")).to_have_text("已完成: 乡镇核准")
    page.context.close()

    # --- the county: confirm, compare (public security has not answered: override), label -----------------------
    page = _login(browser, base, "xian")
    page.goto(case_url)
    _take(page, "COUNTY_CONFIRM", note="县乡村振兴局确认")
    expect(page.locator("#message")).to_have_text("已完成: 县级确认")
    comparisons = page.locator("#comparisons")
    expect(comparisons).to_contain_text("人民银行博州中心支行未查到该人员的存贷款记录")
    expect(comparisons.locator("h3[data-department=public-security]")).to_contain_text("2 人尚未反馈")
    # refused while public security has not answered: the county user's form asks for the override reason
    expect(page.locator(".refused[data-step=DATA_COMPARE]")).to_contain_text("public-security")
    expect(page.locator("#step-DATA_COMPARE input[name=override]")).to_have_attribute("required", "")
    _take(page, "DATA_COMPARE", note="比对", override="公安局系统维护, 已电话核实无车辆")
    expect(page.locator("#message")).to_have_text("已完成: 数据比对")
    _take(page, "LABEL", note="县级公告, 标注为监测对象")
    expect(page.locator("#message")).to_have_text("已完成: 标注纳入")
    expect(page.locator("#current-step")).to_contain_text("标注纳入")
    expect(page.locator("#monitoring-status")).to_have_text("监测中")
    history = page.locator("#history tr[data-kind=STEP]")
    expect(history).to_have_count(6)
    expect(page.locator("#history")).to_contain_text("公安局系统维护, 已电话核实无车辆")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "desk-case.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot of the case page: {shot}")
    assert shot.stat().st_size > 10_000
    page.context.close()

    # --- what the desk wrote, read back through the case operations -------------------------------------------------
    store = open_database(url)
    try:
        cases = Cases(store)
        detail = cases.case_detail("zhou", world.case1)
        steps = [(h.step, h.by_user, h.on_day) for h in detail.history if h.kind == "STEP"]
        assert steps == [("APPLY", "cun", notice_day - dt.timedelta(days=1)), ("PUBLIC_NOTICE", "cun", notice_day),
                         ("TOWNSHIP_VERIFY", "xiang", today), ("COUNTY_CONFIRM", "xian", today),
                         ("DATA_COMPARE", "xian", today), ("LABEL", "xian", today)]
        assert detail.household is not None and detail.household.monitoring_status == "MONITORING"
        audit = cases.audit_for_household(detail.household.household_id)
        viewers = {a.user_name for a in audit if a.action == "VIEW_CASE"}
        assert viewers >= {"cun", "xiang", "xian"}
        assert [a.detail for a in audit if a.action == "REFUSED"][:1] and \
            any("must stand 5 days" in (a.detail or "") for a in audit if a.action == "REFUSED")
    finally:
        store.close()
    assert child.alive


def test_another_regions_case_in_chromium(desk: tuple[str, World, str, ChildProcess], browser: Browser) -> None:
    base, world, _, _ = desk
    page = _login(browser, base, "jinghe")
    expect(page.locator("#worklist tbody tr")).to_have_count(1)
    response = page.goto(f"{base}/cases/{world.case1}")
    assert response is not None and response.status == 404
    expect(page.locator("#problem")).to_contain_text("不在您的辖区内")
    expect(page.locator("main")).not_to_contain_text(HEAD1_NAME)
    page.click("#logout")
    expect(page).to_have_url(f"{base}/login")
    page.goto(f"{base}/cases")
    expect(page).to_have_url(f"{base}/login?next=%2Fcases")
    page.context.close()


def _desk_exits(env: dict[str, str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "services.cli", "desk"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done.returncode, done.stderr


def test_start_up_errors_are_one_line(desk: tuple[str, World, str, ChildProcess], tmp_path: Path) -> None:
    base, _, url, _ = desk
    taken = base.rsplit(":", 1)[1]
    code, err = _desk_exits({"POVWATCH_CASE_DB": url, "POVWATCH_DESK_PORT": taken, "POVWATCH_DESK_SECRET": SECRET})
    assert code == 2 and err.startswith(f"povwatch: error: cannot serve the desk on 127.0.0.1:{taken}: ")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    code, err = _desk_exits({"POVWATCH_CASE_DB": url, "POVWATCH_DESK_PORT": str(_free_port()),
                             "POVWATCH_DESK_SECRET": "too-short"})
    assert code == 2 and "POVWATCH_DESK_SECRET must be at least 32 characters" in err
    assert len(err.strip().splitlines()) == 1, err
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    code, err = _desk_exits({"POVWATCH_CASE_DB": f"sqlite:///{not_a_dir}/sub/cases.db",
                             "POVWATCH_DESK_PORT": str(_free_port()), "POVWATCH_DESK_SECRET": SECRET})
    assert code == 2 and "POVWATCH_CASE_DB" in err and "Traceback" not in err, err
    code, err = _desk_exits({"POVWATCH_CASE_DB": url, "POVWATCH_DESK_PORT": "eighty"})
    assert code == 2 and "POVWATCH_DESK_PORT" in err and len(err.strip().splitlines()) == 1, err
