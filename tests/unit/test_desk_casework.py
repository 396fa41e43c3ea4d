"""The desk (TestClient, SQLite) with issue #11's case side (tests/casework_world.py): the departments that report
an alert ("公安、卫健 印证") and each event's department, a cadre's report in full, township cases, the "逾期" mark
of overdue alerts - and none of it for a user of another region."""
from __future__ import annotations

import html
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.casedb.database import open_database
from services.casedb.store import CaseStore
from services.cases.store import Cases
from tests.casework_world import (
    DEATH_REASON,
    OVERDUE_H1,
    OVERDUE_H2,
    REPORT_TEXT,
    TOWNSHIP1,
    CaseworkWorld,
    prepare_casework,
)
from tests.unit.test_desk_app import client_for, csrf_of, login, problem


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CaseworkWorld]:
    directory = tmp_path_factory.mktemp("desk-casework")
    store = open_database(f"sqlite:///{directory / 'desk.db'}")
    try:
        return directory / "desk.db", prepare_casework(store, directory)
    finally:
        store.close()


@pytest.fixture
def world(prepared: tuple[Path, CaseworkWorld]) -> CaseworkWorld:
    return prepared[1]


@pytest.fixture
def cases(prepared: tuple[Path, CaseworkWorld], tmp_path: Path) -> Iterator[Cases]:
    shutil.copyfile(prepared[0], tmp_path / "desk.db")
    store: CaseStore = open_database(f"sqlite:///{tmp_path / 'desk.db'}")
    yield Cases(store, verify_days=15)
    store.close()


@pytest.fixture
def client(cases: Cases) -> TestClient:
    return client_for(cases)


def row_of(page: str, case_id: int) -> str:
    found = re.search(rf'<tr data-case="{case_id}"[^>]*>(.*?)</tr>', page, re.S)
    assert found, f"case {case_id} is not on the worklist"
    return found.group(0)


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_the_worklist_marks_overdue_cases(client: TestClient, world: CaseworkWorld) -> None:
    login(client, "cun")
    page = client.get("/cases").text
    mine = row_of(page, world.base.case1)
    assert 'class="overdue-row"' in mine
    assert f'<span class="overdue" data-overdue-days="{OVERDUE_H1}">逾期 {OVERDUE_H1} 天</span>' in mine
    assert f'data-case="{world.base.case2}"' not in page and "逾期 15 天" not in page  # another county's


def test_the_case_page_shows_departments_events_deadline_and_the_full_report(client: TestClient,
                                                                             world: CaseworkWorld) -> None:
    login(client, "cun")
    page = client.get(f"/cases/{world.base.case1}").text
    shown = text_of(page)
    assert "报告部门: 公安、卫健 印证" in shown and DEATH_REASON in shown
    for event, department in (("ev-ps-1", "public-security"), ("ev-health-1", "health"),
                              ("ev-cadre-1", "intake")):
        assert f'data-event="{event}" data-department="{department}"' in page
    assert re.search(r'data-event="ev-health-1"[^>]*><span class="source">卫健</span>', page)
    assert re.search(r'data-event="ev-cadre-1"[^>]*><span class="source">基层干部排查</span>', page)
    assert html.escape(REPORT_TEXT, quote=False) in page  # the cadre's report in full, its line break kept
    assert f'id="overdue"><span class="overdue" data-overdue-days="{OVERDUE_H1}">逾期 {OVERDUE_H1} 天' in page
    assert f'id="alert-facts-{world.h1_medical_alert}"' in page
    medical = page[page.index(f'id="alert-facts-{world.h1_medical_alert}"'):]
    assert medical.index(f"逾期 {OVERDUE_H1} 天") < medical.index("</p>")
    # acknowledging the overdue alert ends it
    token = csrf_of(page)
    done = client.post(f"/cases/{world.base.case1}/alerts/{world.h1_medical_alert}/acknowledge", data={"csrf": token})
    assert done.status_code == 303
    assert "逾期" not in row_of(client.get("/cases").text, world.base.case1)


def test_a_user_of_another_region_sees_none_of_it(client: TestClient, world: CaseworkWorld) -> None:
    login(client, "jinghe")  # county 652722: H2's case, not H1's
    page = client.get("/cases").text
    assert f"逾期 {OVERDUE_H2} 天" in row_of(page, world.base.case2)
    assert f'data-case="{world.base.case1}"' not in page and f"逾期 {OVERDUE_H1} 天" not in page
    assert f'data-case="{world.township_case}"' not in page
    for path in (f"/cases/{world.base.case1}", f"/cases/{world.township_case}"):
        answer = client.get(path)
        assert answer.status_code == 404 and "不在您的辖区内" in problem(answer.text)
        for secret in ("印证", "公安", "卫健", "逾期", "ev-ps-1", "基层干部排查", REPORT_TEXT[:20], "返乡"):
            assert secret not in answer.text, secret
    # the township's filter of another county finds nothing either
    assert f'data-case="{world.base.case1}"' not in client.get(f"/cases?township={TOWNSHIP1}").text
    # nor can they acknowledge the overdue alert
    token = csrf_of(page)
    refused = client.post(f"/cases/{world.base.case1}/alerts/{world.h1_medical_alert}/acknowledge",
                          data={"csrf": token})
    assert refused.status_code == 404


def test_their_own_corroborated_overdue_case(client: TestClient, world: CaseworkWorld) -> None:
    login(client, "jinghe")
    shown = text_of(client.get(f"/cases/{world.base.case2}").text)
    assert "报告部门: 公安、卫健 印证" in shown and f"逾期 {OVERDUE_H2} 天" in shown


def test_township_cases_on_the_desk(client: TestClient, world: CaseworkWorld) -> None:
    login(client, "xiang")  # township 652701100
    page = client.get("/cases").text
    row = row_of(page, world.township_case)
    assert f"乡镇 {TOWNSHIP1}" in row and "集中返乡" in row
    filtered = client.get("/cases?rule=REGIONAL_RETURNS").text
    assert f'data-case="{world.township_case}"' in filtered and f'data-case="{world.base.case1}"' not in filtered
    detail = client.get(f"/cases/{world.township_case}")
    assert detail.status_code == 200
    shown = text_of(detail.text)
    assert f"乡镇 {TOWNSHIP1}" in shown and "30 日内 12 人务工结束返乡" in shown and "报告部门: 人社" in shown
    client.cookies.clear()
    login(client, "cun")  # a village user: a township-wide case is the township's
    assert f'data-case="{world.township_case}"' not in client.get("/cases").text
    assert client.get(f"/cases/{world.township_case}").status_code == 404


def test_case_show_text_and_json_carry_departments_and_deadlines(cases: Cases, world: CaseworkWorld) -> None:
    import json

    from services.cases.views import render_detail, to_json

    detail = cases.case_detail("cun", world.base.case1)
    text = render_detail(detail)
    assert f"OVERDUE: 1 alert(s), up to {OVERDUE_H1} day(s)" in text.splitlines()[0]
    assert "[公安、卫健 印证]" in text and "event ev-health-1 卫健 (events.health.chronic-disease)" in text
    assert f"OVERDUE {OVERDUE_H1} day(s)" in text and REPORT_TEXT in text
    data = json.loads(to_json(detail))
    death = next(a for a in data["alerts"] if a["rule"] == "DEATH_IN_HOUSEHOLD")
    assert (death["corroboration"], death["departments"], death["overdue_days"]) == (
        "公安、卫健 印证", ["公安", "卫健"], 0)
    assert [e["source"] for e in death["evidence"][0]["events"]] == ["公安", "卫健"]
    assert data["case"]["overdue_days"] == OVERDUE_H1
