"""集中排查 on the web desk in a real headless Chromium (Debian's chromium, driven by Playwright as in
tests/integration/test_desk_browser.py), against `povwatch desk` running as a child process on a SQLite case DB:
the desk's world (tests/desk_world.py) with this quarter's and this year's screening tasks opened through
`povwatch screening open`, as an operator would.

The village user sees the village's open tasks without a form; the township user sees the same tasks with the
"已排查" form, marks the quarter's task screened with a note, and the task leaves the list; the case DB then holds
it closed by that user, with the note, in the audit log too.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from plumbing.processes import ChildProcess
from services.casedb.database import open_database
from services.cases.screening import Kind, current_period
from services.cases.screening_store import Screening
from services.cases.store import Cases
from tests.desk_world import H1, H2, World, prepare
from tests.integration.test_desk_browser import (  # noqa: F401  (the browser fixture)
    ARTIFACTS,
    SECRET,
    _free_port,
    _login,
    _wait_ready,
    browser,
)

pytestmark = pytest.mark.integration


def _povwatch(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, World, str]]:
    workdir = tmp_path_factory.mktemp("screening-desk")
    url = f"sqlite:///{workdir / 'cases.db'}"
    store = open_database(url)
    try:
        world = prepare(store, workdir)
    finally:
        store.close()
    env = {"POVWATCH_CASE_DB": url}
    assert "opened 1 task(s)" in _povwatch(env, "screening", "open", "quarterly")   # H1 (边缘易致贫户)
    assert "opened 2 task(s)" in _povwatch(env, "screening", "open", "annual")      # H1 and H2
    port = _free_port()
    child = ChildProcess(["desk"], env={**env, "POVWATCH_DESK_PORT": str(port), "POVWATCH_DESK_HOST": "127.0.0.1",
                                        "POVWATCH_DESK_SECRET": SECRET, "POVWATCH_DESK_INSECURE_COOKIES": "1"},
                         log_path=workdir / "desk.log")
    try:
        _wait_ready(port, child)
        yield f"http://127.0.0.1:{port}", world, url
    finally:
        code = child.stop()
        assert code == 0, f"povwatch desk exited {code} on SIGTERM:\n{child.tail(30)}"


def test_a_township_user_marks_a_household_screened_in_chromium(desk: tuple[str, World, str],
                                                                browser: Browser) -> None:  # noqa: F811
    base, _, url = desk
    store = open_database(url)
    try:
        screening = Screening(store)
        today = screening.today()
        quarter, year = current_period(Kind.QUARTERLY, today).label, current_period(Kind.ANNUAL, today).label
        tasks, _ = screening.visible_tasks("zhou")
        ids = {(t.period, t.household_id): t.id for t in tasks}
    finally:
        store.close()
    assert set(ids) == {(quarter, H1), (year, H1), (year, H2)}

    # the village: the village's two tasks, no form
    page = _login(browser, base, "cun")
    rows = page.locator("#screening-tasks tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator(f"tr[data-task='{ids[(quarter, H1)]}']")).to_contain_text(H1)
    expect(page.locator("#screening form")).to_have_count(0)
    expect(page.locator("#screening")).to_contain_text("待干部走访上报")
    page.context.close()

    # the township: the same two tasks with the form; the quarter's is marked screened
    page = _login(browser, base, "xiang")
    expect(page.locator("#screening-tasks tbody tr")).to_have_count(2)
    expect(page.locator("#screening h2")).to_contain_text("辖区内未排查 2 户")
    form = page.locator(f"#screen-{ids[(quarter, H1)]}")
    expect(form.locator("input[name=note]")).to_have_attribute("required", "")
    form.locator("input[name=note]").fill("入户走访, 收入稳定, 无返贫风险")
    form.locator("button[type=submit]").click()
    expect(page.locator("#message")).to_have_text(f"已排查: 排查任务 #{ids[(quarter, H1)]} 已办结")
    expect(page.locator("#screening-tasks tbody tr")).to_have_count(1)
    expect(page.locator(f"tr[data-task='{ids[(year, H1)]}']")).to_contain_text(year)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "desk-screening.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    page.context.close()

    store = open_database(url)
    try:
        left, total = Screening(store).visible_tasks("zhou")
        assert total == 2 and {t.id for t in left} == {ids[(year, H1)], ids[(year, H2)]}
        audit = [a for a in Cases(store).audit_for_household(H1) if a.action == "SCREENING_CLOSE"]
        assert [(a.user_name, a.detail) for a in audit] == [
            ("xiang", f"task {ids[(quarter, H1)]} {quarter} marked screened: 入户走访, 收入稳定, 无返贫风险")]
    finally:
        store.close()
    out = _povwatch({"POVWATCH_CASE_DB": url}, "screening", "status", "--period", quarter)
    assert [line.split() for line in out.splitlines() if line.strip().startswith(("652701100", "total"))] == [
        ["652701100", "0", "1", "100.0%"], ["total", "0", "1", "100.0%"]]
