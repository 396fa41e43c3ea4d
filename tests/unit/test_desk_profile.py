"""The household profile on the desk and the risk-elimination checks (P70) at its step form, in process (TestClient)
on the SQLite case DB of tests/desk_world.py: the profile block on the case page and on /households/{id}, scoped to
the user's region (another region's household is a 404, and the attempt is audited), and NOMINATE_NOTICE refused
with its reason (409) while the income is below the county's line."""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

from services.casedb.store import CaseStore
from services.cases.profiles import record_profiles
from services.cases.store import Cases
from tests.desk_world import H1, H2, HEAD1_NAME, SPOUSE1_NAME, VILLAGE1, World
from tests.unit.test_desk_app import cases, client, login, prepared, problem, store, world  # noqa: F401

UPDATED = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC)


def h1_profile(store: CaseStore, *, income: str, updated: dt.datetime = UPDATED) -> None:  # noqa: F811
    head = Cases(store).household_profile(None, H1, audited=False).members[0].person_key
    record_profiles(store, [(H1, {
        "household_id": H1, "village_code": VILLAGE1, "income_year": 2025, "income_per_capita": Decimal(income),
        "updated_at": updated, "facts": [
            {"domain": "住房", "topic": "events.housing.house-safety", "department": "housing", "feed": "住房安全",
             "event_id": "ev-house", "person_key": head, "day": dt.date(2025, 6, 22),
             "values": {"cause": "NATURAL_DISASTER", "safety_grade": "D", "damage": "COLLAPSED",
                        "event_date": "2025-06-22"}},
            {"domain": "收入", "topic": "events.statistics.household-income", "department": "statistics",
             "feed": "住户收入", "event_id": "ev-income", "person_key": head, "day": dt.date(2025, 1, 1),
             "values": {"year": "2025", "household_size": "2", "net_income": str(Decimal(income) * 2),
                        "per_capita_net_income": income}}]})])


def section(html: str) -> str:
    found = re.search(r'<section id="profile".*?</section>', html, re.S)
    assert found, "no profile block on the page"
    return found.group(0)


def test_the_profile_block_on_the_case_page_and_its_own_page(client: TestClient, store: CaseStore,  # noqa: F811
                                                              world: World) -> None:  # noqa: F811
    h1_profile(store, income="8200.00")
    login(client, "cun")
    block = section(client.get(f"/cases/{world.case1}").text)
    for text in (HEAD1_NAME, SPOUSE1_NAME, "有劳动能力", "住建 · 住房安全", "事由: 自然灾害", "损毁程度: 倒塌",
                 "人均纯收入 8200 元 (2025 年, 统计局住户收入), 本县标准 9000 元: 低于标准", f"{HEAD1_NAME} (户主)",
                 "医疗支出"):
        assert text in block, text
    page = client.get(f"/households/{H1}")
    assert page.status_code == 200 and section(page.text) == block
    assert f'href="/cases/{world.case1}"' in page.text
    assert client.get("/households/NOPE").status_code == 404
    actions = [(e.user_name, e.action) for e in Cases(store).audit_for_household(H1)]
    assert actions == [("cun", "VIEW_CASE"), ("cun", "VIEW_HOUSEHOLD")]  # the case page's block: its VIEW_CASE


def test_another_regions_user_cannot_read_the_profile(client: TestClient, store: CaseStore,  # noqa: F811
                                                      world: World) -> None:  # noqa: F811
    """An attacker: a county user of Jinghe (652722) asks for Bole's household H1 by its id, on its own page and
    through H1's case page: both 404, no name of H1 in the answers, and the attempt is in the audit log."""
    h1_profile(store, income="8200.00")
    login(client, "jinghe")
    for url in (f"/households/{H1}", f"/cases/{world.case1}", f"/households/{H1}?x=1"):
        answer = client.get(url)
        assert answer.status_code == 404, url
        assert HEAD1_NAME not in answer.text and SPOUSE1_NAME not in answer.text and "8200" not in answer.text
    assert problem(client.get(f"/households/{H1}").text) == f"没有户编号为 {H1} 的农户, 或该户不在您的辖区内"
    refused = [e for e in Cases(store).audit_for_household(H1) if e.action == "REFUSED"]
    assert refused and all(e.user_name == "jinghe" for e in refused)
    assert any("outside the region 652722" in (e.detail or "") for e in refused)
    assert client.get(f"/households/{H2}").status_code == 200  # their own household is theirs to see
    client.cookies.clear()
    assert client.get(f"/households/{H1}").status_code == 303  # not logged in: to the log-in page


def _include(store: CaseStore, case_id: int) -> None:  # noqa: F811
    c = Cases(store)
    today = c.today()
    for user, step, days, extra in (("cun", "APPLY", 12, {"authorised": True}), ("cun", "PUBLIC_NOTICE", 11, {}),
                                    ("xiang", "TOWNSHIP_VERIFY", 5, {}), ("xian", "COUNTY_CONFIRM", 4, {}),
                                    ("xian", "DATA_COMPARE", 3, {}), ("xian", "LABEL", 2, {})):
        kwargs: dict[str, Any] = dict(extra)
        c.advance(user, case_id, step, on=today - dt.timedelta(days=days), **kwargs)


def test_nominate_notice_is_refused_on_the_form_below_the_line(client: TestClient, store: CaseStore,  # noqa: F811
                                                               world: World) -> None:  # noqa: F811
    _include(store, world.case1)
    h1_profile(store, income="8200.00")
    token = login(client, "cun")
    page = client.get(f"/cases/{world.case1}").text
    shown = re.search(r'<p class="refused" data-step="NOMINATE_NOTICE">([^<]*)</p>', page)
    assert shown and "人均纯收入 8200 元，低于 2025 年本县标准 9000 元" in shown.group(1)  # before submitting
    answer = client.post(f"/cases/{world.case1}/steps/NOMINATE_NOTICE", data={"csrf": token, "note": "提名"})
    assert answer.status_code == 409
    assert problem(answer.text) == (f"提名公示未办理: case {world.case1}: NOMINATE_NOTICE refused: the income is not "
                                    "stable (P70): 人均纯收入 8200 元，低于 2025 年本县标准 9000 元")
    [refused] = [e for e in Cases(store).audit_for_household(H1) if e.action == "REFUSED"]
    assert refused.user_name == "cun" and "低于 2025 年本县标准 9000 元" in (refused.detail or "")
    h1_profile(store, income="9000.00", updated=UPDATED + dt.timedelta(days=30))  # the income reaches the line
    answer = client.post(f"/cases/{world.case1}/steps/NOMINATE_NOTICE", data={"csrf": token, "note": "提名"})
    assert answer.status_code == 303 and answer.headers["location"].endswith("?done=NOMINATE_NOTICE")
