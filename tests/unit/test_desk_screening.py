"""集中排查 on the web desk (TestClient over https://testserver, a real SQLite case DB prepared by tests/desk_world.py):
the worklist lists the user's open screening tasks with the "已排查" form, and the attacks on that form fail - another
township's task by id (404), a village user (403), no or a foreign CSRF token (403), a forged or backdated period
(409), a huge or empty note (400) - each leaving the task open."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.casedb.models import AuditEntry, ScreeningTask
from services.casedb.store import CaseStore
from services.cases.screening import Kind, Period, current_period
from services.cases.screening_store import Screening
from services.cases.store import Cases
from services.desk.app import create_app
from tests.desk_world import H1, H2, PASSWORD
from tests.unit.test_desk_app import (  # noqa: F401  (fixtures)
    SECRET,
    TODAY,
    cases,
    csrf_of,
    login,
    prepared,
    problem,
    store,
    world,
)


@pytest.fixture
def screening(store: CaseStore) -> Screening:  # noqa: F811
    s = Screening(store)
    today = s.today()
    s.open(current_period(Kind.QUARTERLY, today))  # H1 (边缘易致贫户)
    s.open(current_period(Kind.ANNUAL, today))     # H1 and H2
    s.open(Period(today.year - 1))                 # last year's: ended, still open
    return s


def desk(cases: Cases, screening: Screening | None) -> TestClient:  # noqa: F811
    app = create_app(cases, secret=SECRET, today=lambda: TODAY, screening=screening)
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


@pytest.fixture
def client(cases: Cases, screening: Screening) -> Iterator[TestClient]:  # noqa: F811
    yield desk(cases, screening)


def tasks(store: CaseStore) -> dict[int, tuple[str, str, str, str | None, str | None]]:  # noqa: F811
    """id -> (period, household, status, closed_by, note)."""
    with Session(store.engine) as session:
        return {t.id: (t.period, t.household_id, t.status, t.closed_by, t.close_note)
                for t in session.scalars(select(ScreeningTask))}


def task_of(store: CaseStore, period: str, household: str) -> int:  # noqa: F811
    return next(i for i, (p, h, *_) in tasks(store).items() if (p, h) == (period, household))


def listed(html: str) -> set[int]:
    return set(map(int, re.findall(r'data-task="(\d+)"', html)))


def test_the_worklist_shows_the_users_open_tasks(cases: Cases, screening: Screening,  # noqa: F811
                                                 store: CaseStore) -> None:  # noqa: F811
    today = screening.today()
    quarter, year = current_period(Kind.QUARTERLY, today).label, str(today.year)
    h1q, h1y, h2y = task_of(store, quarter, H1), task_of(store, year, H1), task_of(store, year, H2)
    seen = {}
    for name in ("cun", "xiang", "xian", "jinghe", "zhou"):
        client = desk(cases, screening)
        login(client, name)
        page = client.get("/cases").text
        seen[name] = listed(page)
        forms = set(map(int, re.findall(r'action="/screening/(\d+)/close"', page)))
        assert forms == (set() if name == "cun" else seen[name]), name
    assert seen == {"cun": {h1q, h1y}, "xiang": {h1q, h1y}, "xian": {h1q, h1y}, "jinghe": {h2y},
                    "zhou": {h1q, h1y, h2y}}  # last year's tasks are not listed: their period has ended
    client = desk(cases, screening)
    login(client, "xiang")
    page = client.get("/cases").text
    assert f'<tr data-task="{h1q}" data-period="{quarter}">' in page
    assert f'<input type="hidden" name="period" value="{quarter}">' in page and "已排查" in page
    assert "边缘易致贫户" in page and "辖区内未排查 2 户" in page
    # a desk without the screening operations shows no such section and has no such route
    plain = desk(cases, None)
    token = login(plain, "xiang")
    assert 'id="screening"' not in plain.get("/cases").text
    assert plain.post(f"/screening/{h1q}/close", data={"csrf": token, "note": "x"}).status_code == 404


def test_a_township_user_marks_a_task_screened(client: TestClient, cases: Cases,  # noqa: F811
                                               screening: Screening, store: CaseStore) -> None:  # noqa: F811
    token = login(client, "xiang")
    quarter = current_period(Kind.QUARTERLY, screening.today()).label
    task = task_of(store, quarter, H1)
    answer = client.post(f"/screening/{task}/close", data={"csrf": token, "note": " 入户走访, 家中情况正常 ",
                                                           "period": quarter})
    assert answer.status_code == 303 and answer.headers["location"] == f"/cases?screened={task}#screening"
    page = client.get(f"/cases?screened={task}").text
    assert f"已排查: 排查任务 #{task} 已办结" in page and task not in listed(page)
    assert tasks(store)[task][2:] == ("CLOSED", "xiang", "入户走访, 家中情况正常")
    audit = [(a.user_name, a.action, a.household_id, a.detail) for a in cases.audit_for_household(H1)
             if a.action == "SCREENING_CLOSE"]
    assert audit == [("xiang", "SCREENING_CLOSE", H1, f"task {task} {quarter} marked screened: 入户走访, 家中情况正常")]
    # the same form again: already closed (409), one line
    again = client.post(f"/screening/{task}/close", data={"csrf": token, "note": "再次", "period": quarter})
    assert again.status_code == 409 and "already closed (by xiang)" in problem(again.text)


def test_attacks_on_the_screening_form_leave_tasks_open(client: TestClient, cases: Cases,  # noqa: F811
                                                         screening: Screening, store: CaseStore) -> None:  # noqa: F811
    today = screening.today()
    quarter, year = current_period(Kind.QUARTERLY, today).label, str(today.year)
    h1q, h2y = task_of(store, quarter, H1), task_of(store, year, H2)
    last_year = task_of(store, str(today.year - 1), H1)
    cases.add_user("xiang2", "township", "652722100", PASSWORD)  # H2's township
    before = tasks(store)
    token = login(client, "xiang")

    def post(task: int, **data: str) -> tuple[int, str]:
        answer = client.post(f"/screening/{task}/close", data={"csrf": token, "note": "入户走访", **data})
        return answer.status_code, problem(answer.text) if answer.status_code != 303 else ""

    # another township's task, named by id in the URL: as if it did not exist
    assert post(h2y, period=year) == (404, f"没有编号为 {h2y} 的排查任务, 或该任务不在您的辖区内")
    assert post(999_999)[0] == 404
    assert client.post("/screening/abc/close", data={"csrf": token, "note": "x"}).status_code == 400
    other = desk(cases, screening)
    other_token = login(other, "xiang2")
    assert other.post(f"/screening/{h1q}/close", data={"csrf": other_token, "note": "越权"}).status_code == 404
    # a forged period, and last year's task (its period has ended: backdating)
    code, line = post(h1q, period=str(today.year - 1))
    assert code == 409 and f"belongs to the screening {quarter}" in line
    code, line = post(last_year, period=str(today.year - 1))
    assert code == 409 and f"the screening {today.year - 1} ended on {today.year - 1}-12-31" in line
    # an over-long note (refused, not cut and stored); a huge one (refused by the form parser's 1 MB bound on a
    # field, before the desk's code runs); an empty one
    code, line = post(h1q, period=quarter, note="很" * 2001)
    assert code == 400 and "longer than 2000 characters" in line and len(line) < 300
    code, line = post(h1q, period=quarter, note="很" * 400_000)
    assert code == 400 and "很很" not in line and len(line) < 300
    assert post(h1q, period=quarter, note="   ")[0] == 400
    # CSRF: none, a truncated one, another session's
    for data in ({"note": "x"}, {"note": "x", "csrf": ""}, {"note": "x", "csrf": token[:-1]},
                 {"note": "x", "csrf": other_token}):
        answer = client.post(f"/screening/{h1q}/close", data=data)
        assert answer.status_code == 403 and "CSRF" in problem(answer.text), data
    # a village user sees the task but may not close it
    village = desk(cases, screening)
    village_token = login(village, "cun")
    answer = village.post(f"/screening/{h1q}/close",
                          data={"csrf": village_token, "note": "我已走访", "period": quarter})
    assert answer.status_code == 403 and "村级用户不能标记已排查" in problem(answer.text)
    # logged out: refused outright
    anonymous = desk(cases, screening)
    anonymous_token = csrf_of(anonymous.get("/login").text)
    assert anonymous.post(f"/screening/{h1q}/close", data={"csrf": anonymous_token, "note": "x"}).status_code == 403
    assert tasks(store) == before  # nothing closed
    with Session(store.engine) as session:
        refused = [(a.user_name, a.detail or "") for a in session.scalars(
            select(AuditEntry).where(AuditEntry.action == "REFUSED").order_by(AuditEntry.id))]
    assert [u for u, _ in refused] == ["xiang", "xiang2", "xiang", "xiang", "xiang", "xiang", "cun"]
    assert all("很很" not in d for _, d in refused)
    # and the real thing still works afterwards
    assert post(h1q, period=quarter) == (303, "")
    assert tasks(store)[h1q][2:4] == ("CLOSED", "xiang")

