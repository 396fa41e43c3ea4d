"""The web desk in process (Starlette's TestClient over https://testserver, so the Secure cookie is sent) on a
real SQLite case DB prepared through the case operations (tests/desk_world.py): log-in required, CSRF on every
POST, another region's case as 404, steps by the right role only, the refusals' one line, the audit of every view,
error pages without tracebacks."""
from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Route

from services.casedb.database import open_database
from services.casedb.store import CaseStore
from services.cases.store import Cases
from services.desk.app import create_app
from services.desk.sessions import COOKIE
from tests.desk_world import H1, HEAD1_NAME, PASSWORD, REASON1, REASON2, SPOUSE1_NAME, World, prepare

SECRET = "unit-test-desk-secret-0123456789abcdef"
TODAY = dt.date.today()
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    """The world prepared once (argon2 hashes and the roster import take seconds); each test gets a copy."""
    directory = tmp_path_factory.mktemp("desk-template")
    store = open_database(f"sqlite:///{directory / 'desk.db'}")
    try:
        return directory / "desk.db", prepare(store, directory)
    finally:
        store.close()


@pytest.fixture
def world(prepared: tuple[Path, World]) -> World:
    return prepared[1]


@pytest.fixture
def store(prepared: tuple[Path, World], tmp_path: Path) -> Iterator[CaseStore]:
    shutil.copyfile(prepared[0], tmp_path / "desk.db")
    store = open_database(f"sqlite:///{tmp_path / 'desk.db'}")
    yield store
    store.close()


@pytest.fixture
def cases(store: CaseStore) -> Cases:
    return Cases(store)


def client_for(cases: Any, **options: Any) -> TestClient:
    app = create_app(cases, secret=SECRET, today=lambda: TODAY, **options)
    return TestClient(app, base_url="https://testserver", follow_redirects=False)


@pytest.fixture
def client(cases: Cases) -> TestClient:
    return client_for(cases)


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Log in; the CSRF token of the logged-in session."""
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"name": name, "password": password, "csrf": token})
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/cases").text)


def problem(html: str) -> str:
    """The one line an error page or a refused step shows."""
    found = re.search(r'id="(?:problem|error)">([^<]*)<', html)
    assert found, html
    return found.group(1)


def steps_of(cases: Cases, user: str, case_id: int) -> list[str | None]:
    return [h.step for h in cases.case_detail(user, case_id).history if h.kind == "STEP"]


# --- logging in ----------------------------------------------------------------------------------------------
def test_every_page_needs_a_login(client: TestClient, world: World) -> None:
    for path in ("/cases", f"/cases/{world.case1}", "/cases?severity=HIGH"):
        answer = client.get(path)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=%2Fcases")
    assert client.get("/").headers["location"] == "/cases"
    # a POST without a session is refused outright (no token can match)
    answer = client.post(f"/cases/{world.case1}/steps/APPLY", data={"csrf": "x", "authorised": "1"})
    assert answer.status_code == 403 and "\n" not in problem(answer.text)


def test_log_in_and_out(client: TestClient, cases: Cases, world: World) -> None:
    token = csrf_of(client.get("/login").text)
    wrong = client.post("/login", data={"name": "cun", "password": "not-the-password", "csrf": token})
    assert wrong.status_code == 401 and problem(wrong.text) == "用户名或密码错误"
    nobody = client.post("/login", data={"name": "nobody", "password": PASSWORD, "csrf": token})
    assert nobody.status_code == 401
    answer = client.post("/login", data={"name": "cun", "password": PASSWORD, "csrf": token,
                                         "next": f"/cases/{world.case1}"})
    assert answer.status_code == 303 and answer.headers["location"] == f"/cases/{world.case1}"
    page = client.get(f"/cases/{world.case1}")
    assert page.status_code == 200 and "cun · 村 · 辖区 652701100201" in page.text
    kept = dict(client.cookies)
    assert client.post("/logout", data={"csrf": csrf_of(page.text)}).headers["location"] == "/login"
    assert client.get("/cases").status_code == 303  # logged out
    # the old cookie, replayed, is refused: logging out revoked the session
    again = TestClient(client.app, base_url="https://testserver", follow_redirects=False)  # the same desk
    again.cookies.update(kept)
    assert again.get("/cases").status_code == 303
    actions = [a.action for a in cases.audit_for_household(H1)]
    assert actions.count("VIEW_CASE") == 1


def test_log_in_needs_the_forms_token(client: TestClient) -> None:
    client.get("/login")
    answer = client.post("/login", data={"name": "cun", "password": PASSWORD})
    assert answer.status_code == 403 and "CSRF" in problem(answer.text)
    answer = client.post("/login", data={"name": "cun", "password": PASSWORD, "csrf": "forged"})
    assert answer.status_code == 403


def test_logging_in_issues_a_new_session(client: TestClient) -> None:
    anonymous = csrf_of(client.get("/login").text)
    assert login(client, "cun") != anonymous


def test_the_cookie_is_httponly_lax_and_secure(cases: Cases) -> None:
    answer = client_for(cases).get("/login")
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" in cookie and "Path=/" in cookie
    plain = client_for(cases, secure_cookies=False).get("/login").headers["set-cookie"]
    assert "Secure" not in plain and "HttpOnly" in plain


def test_after_log_in_only_local_pages(client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        answer = client.post("/login", data={"name": "cun", "password": PASSWORD, "csrf": token, "next": target})
        assert answer.headers["location"] == "/cases", target
        token = csrf_of(client.get("/login").text) if answer.status_code != 303 else login_token(client)


def login_token(client: TestClient) -> str:
    page = client.get("/cases")
    client.post("/logout", data={"csrf": csrf_of(page.text)})
    return csrf_of(client.get("/login").text)


def test_a_deactivated_user_is_logged_out(client: TestClient, store: CaseStore, world: World) -> None:
    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from services.casedb.models import User

    login(client, "cun")
    with Session(store.engine) as session, session.begin():
        session.execute(update(User).where(User.name == "cun").values(active=False))
    assert client.get("/cases").status_code == 303


# --- CSRF ----------------------------------------------------------------------------------------------------
def test_a_post_without_the_sessions_token_is_refused(client: TestClient, cases: Cases, world: World) -> None:
    token = login(client, "cun")
    url = f"/cases/{world.case1}/steps/APPLY"
    for data in ({"authorised": "1"}, {"authorised": "1", "csrf": ""}, {"authorised": "1", "csrf": token[:-1]}):
        answer = client.post(url, data=data)
        assert answer.status_code == 403, data
        assert "CSRF" in problem(answer.text)
    other = client_for(cases)
    other_token = login(other, "cun")  # the same user's other session: its token is not this session's
    assert client.post(url, data={"authorised": "1", "csrf": other_token}).status_code == 403
    assert steps_of(cases, "zhou", world.case1) == []
    assert client.post(url, data={"authorised": "1", "csrf": token}).status_code == 303
    assert steps_of(cases, "zhou", world.case1) == ["APPLY"]


def test_every_post_route_checks_the_token(client: TestClient, world: World) -> None:
    login(client, "xian")
    posts = [r for r in client.app.routes if isinstance(r, Route) and "POST" in (r.methods or ())]  # type: ignore[attr-defined]
    assert {r.path for r in posts} >= {"/login", "/logout", "/cases/{case_id}/steps/{step_name}",
                                       "/cases/{case_id}/alerts/{alert_id}/acknowledge", "/cases/{case_id}/resolve"}
    for route in posts:
        path = route.path.format(case_id=world.case1, step_name="APPLY", alert_id=1)
        answer = client.post(path, data={"note": "x", "name": "cun", "password": PASSWORD})
        assert answer.status_code == 403, path


# --- regions -------------------------------------------------------------------------------------------------
def test_a_user_sees_only_their_region(cases: Cases, world: World) -> None:
    seen = {}
    for name in ("cun", "xiang", "xian", "jinghe", "zhou"):
        client = client_for(cases)
        login(client, name)
        page = client.get("/cases").text
        seen[name] = set(map(int, re.findall(r'data-case="(\d+)"', page)))
    assert seen == {"cun": {world.case1}, "xiang": {world.case1}, "xian": {world.case1}, "jinghe": {world.case2},
                    "zhou": {world.case1, world.case2}}


def test_another_regions_case_is_not_found(client: TestClient, cases: Cases, world: World) -> None:
    token = login(client, "xian")
    page = client.get(f"/cases/{world.case2}")
    assert page.status_code == 404 and "不在您的辖区内" in problem(page.text)
    assert "巴图孟和" not in page.text and REASON2 not in page.text
    step = client.post(f"/cases/{world.case2}/steps/APPLY", data={"csrf": token, "authorised": "1"})
    assert step.status_code == 404
    assert client.get("/cases/99999").status_code == 404
    assert steps_of(cases, "zhou", world.case2) == []
    assert "REFUSED" in [a.action for a in cases.audit_for_household("H-652722-0001")]


# --- the case page and its steps -----------------------------------------------------------------------------
def test_the_case_page_shows_the_household(client: TestClient, world: World) -> None:
    login(client, "cun")
    page = client.get(f"/cases/{world.case1}").text
    for text in (HEAD1_NAME, SPOUSE1_NAME, REASON1, "医疗支出", "待处理", "边缘易致贫户", "未纳入监测", "尚无步骤"):
        assert text in page, text
    assert 'id="step-APPLY"' in page and 'name="authorised"' in page
    assert 'id="resolve-form"' not in page  # a village user does not close cases


def test_a_step_button_posts_and_advances(client: TestClient, cases: Cases, world: World) -> None:
    token = login(client, "cun")
    applied = (TODAY - dt.timedelta(days=6)).isoformat()
    answer = client.post(f"/cases/{world.case1}/steps/APPLY",
                         data={"csrf": token, "on": applied, "note": "村委会代为申请", "authorised": "1"})
    assert answer.status_code == 303 and answer.headers["location"] == f"/cases/{world.case1}?done=APPLY"
    page = client.get(answer.headers["location"]).text
    assert "已完成: 申请" in page and 'data-step="APPLY"' in page and "村委会代为申请" in page
    assert "已签署" in page and 'id="step-PUBLIC_NOTICE"' in page
    detail = cases.case_detail("zhou", world.case1)
    assert detail.authorised and [(h.step, h.on_day.isoformat(), h.by_user) for h in detail.history
                                  if h.kind == "STEP"] == [("APPLY", applied, "cun")]
    listed = client.get("/cases?step=APPLY").text
    assert f'data-case="{world.case1}"' in listed
    assert f'data-case="{world.case1}"' not in client.get("/cases?step=NONE").text


def test_the_wrong_role_is_refused_with_its_reason(cases: Cases, world: World) -> None:
    village = client_for(cases)
    token = login(village, "cun")
    village.post(f"/cases/{world.case1}/steps/APPLY", data={"csrf": token, "authorised": "1",
                                                           "on": (TODAY - dt.timedelta(days=3)).isoformat()})
    township = client_for(cases)
    token = login(township, "xiang")
    page = township.get(f"/cases/{world.case1}").text
    assert 'id="step-PUBLIC_NOTICE"' not in page
    assert re.search(r'data-step="PUBLIC_NOTICE">公示: 暂不能办理 — [^<]*village', page)
    answer = township.post(f"/cases/{world.case1}/steps/PUBLIC_NOTICE", data={"csrf": token})
    assert answer.status_code == 409
    line = problem(answer.text)
    assert line.startswith("公示未办理: ") and "village" in line and "\n" not in line
    assert steps_of(cases, "zhou", world.case1) == ["APPLY"]


def test_the_notice_must_stand_five_days(cases: Cases, world: World) -> None:
    village = client_for(cases)
    token = login(village, "cun")
    for step, days in (("APPLY", 4), ("PUBLIC_NOTICE", 3)):
        answer = village.post(f"/cases/{world.case1}/steps/{step}", data={
            "csrf": token, "authorised": "1" if step == "APPLY" else "",
            "on": (TODAY - dt.timedelta(days=days)).isoformat()})
        assert answer.status_code == 303, problem(answer.text)
    township = client_for(cases)
    token = login(township, "xiang")
    page = township.get(f"/cases/{world.case1}").text
    assert re.search(r'data-step="TOWNSHIP_VERIFY">乡镇核准: 暂不能办理 — [^<]*5 days', page)
    answer = township.post(f"/cases/{world.case1}/steps/TOWNSHIP_VERIFY", data={"csrf": token})
    assert answer.status_code == 409 and "must stand 5 days" in problem(answer.text)


def test_bad_step_input_is_one_line(client: TestClient, cases: Cases, world: World) -> None:
    token = login(client, "cun")
    tomorrow = (TODAY + dt.timedelta(days=1)).isoformat()
    for data, words in (({"on": "2025-13-01"}, "办理日期"), ({"on": tomorrow}, "之后"),
                        ({"note": "字" * 2001}, "备注过长")):
        answer = client.post(f"/cases/{world.case1}/steps/APPLY", data={"csrf": token, **data})
        assert answer.status_code == 400 and words in problem(answer.text)
    answer = client.post(f"/cases/{world.case1}/steps/LEAP", data={"csrf": token})
    assert answer.status_code == 400 and "未知的步骤" in problem(answer.text)
    assert steps_of(cases, "zhou", world.case1) == []


def test_acknowledge_and_resolve(cases: Cases, world: World) -> None:
    village = client_for(cases)
    token = login(village, "cun")
    page = village.get(f"/cases/{world.case1}").text
    alert_id = int(re.search(r'id="ack-(\d+)"', page).group(1))  # type: ignore[union-attr]
    answer = village.post(f"/cases/{world.case1}/alerts/{alert_id}/acknowledge", data={"csrf": token})
    assert answer.status_code == 303
    page = village.get(answer.headers["location"]).text
    assert "已确认预警" in page and "cun 于" in page and f'id="ack-{alert_id}"' not in page
    county = client_for(cases)
    token = login(county, "xian")
    assert county.post(f"/cases/{world.case1}/resolve", data={"csrf": token, "note": " "}).status_code == 400
    answer = county.post(f"/cases/{world.case1}/resolve", data={"csrf": token, "note": "经核实已由亲属资助"})
    assert answer.status_code == 303
    page = county.get(answer.headers["location"]).text
    assert "已结案" in page and "已解除" in page
    assert f'data-case="{world.case1}"' not in county.get("/cases").text  # no longer on the worklist


# --- the worklist --------------------------------------------------------------------------------------------
def test_worklist_filters(cases: Cases, world: World) -> None:
    client = client_for(cases)
    login(client, "zhou")

    def listed(query: str) -> list[int]:
        answer = client.get(f"/cases{query}")
        assert answer.status_code == 200, problem(answer.text)
        return [int(n) for n in re.findall(r'data-case="(\d+)"', answer.text)]

    assert listed("") == [world.case2, world.case1]  # HIGH first
    assert listed("?severity=HIGH") == [world.case2]
    assert listed("?county=652701") == [world.case1]
    assert listed("?township=652722100") == [world.case2]
    assert listed("?rule=MEDICAL_EXPENSE") == [world.case1]
    assert listed("?step=NONE&county=&rule=") == [world.case2, world.case1]
    for query, words in (("?county=65", "6位"), ("?severity=URGENT", "URGENT"), ("?step=FLY", "FLY")):
        answer = client.get(f"/cases{query}")
        assert answer.status_code == 400 and words in problem(answer.text)
    page = client.get("/cases").text
    assert "家庭成员死亡" in page and "医疗支出" in page and "高" in page


# --- audit, errors, headers ----------------------------------------------------------------------------------
def test_every_view_of_a_case_is_audited(client: TestClient, cases: Cases, world: World) -> None:
    login(client, "xiang")
    for _ in range(3):
        client.get(f"/cases/{world.case1}")
    views = [a for a in cases.audit_for_household(H1) if a.action == "VIEW_CASE"]
    assert [(v.user_name, v.case_id) for v in views] == [("xiang", world.case1)] * 3


class _Broken:
    """The real case operations, except that listing cases fails like a bug would."""

    def __init__(self, cases: Cases) -> None:
        self._cases = cases

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cases, name)

    def visible_cases(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("Traceback (most recent call last): secret internals")


def test_errors_are_pages_with_one_line(cases: Cases, world: World) -> None:
    app = create_app(_Broken(cases), secret=SECRET, today=lambda: TODAY)
    client = TestClient(app, base_url="https://testserver", follow_redirects=False, raise_server_exceptions=False)
    login_page = client.get("/login").text
    client.post("/login", data={"name": "cun", "password": PASSWORD, "csrf": csrf_of(login_page)})
    answer = client.get("/cases")
    assert answer.status_code == 500 and problem(answer.text) == "内部错误, 已记入服务日志"
    assert "Traceback" not in answer.text and "secret internals" not in answer.text
    answer = client.get("/no/such/page")
    assert answer.status_code == 404 and problem(answer.text) == "没有这个页面"
    answer = client.get("/cases/not-a-number")
    assert answer.status_code == 400 and "case_id" in problem(answer.text)
    answer = client.put("/cases")
    assert answer.status_code == 405


def test_security_headers(client: TestClient) -> None:
    answer = client.get("/login")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    css = client.get("/static/desk.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/healthz").json() == {"status": "ok"}


def test_data_compare_with_a_department_not_answered(cases: Cases, store: CaseStore, world: World) -> None:
    from tests.desk_world import request_comparisons

    request_comparisons(store, world.case1)
    village = client_for(cases)
    token = login(village, "cun")
    for step, days in (("APPLY", 7), ("PUBLIC_NOTICE", 6)):
        village.post(f"/cases/{world.case1}/steps/{step}", data={
            "csrf": token, "authorised": "1" if step == "APPLY" else "",
            "on": (TODAY - dt.timedelta(days=days)).isoformat()})
    township = client_for(cases)
    township.post(f"/cases/{world.case1}/steps/TOWNSHIP_VERIFY", data={"csrf": login(township, "xiang")})
    county = client_for(cases)
    token = login(county, "xian")
    assert county.post(f"/cases/{world.case1}/steps/COUNTY_CONFIRM", data={"csrf": token}).status_code == 303
    page = county.get(f"/cases/{world.case1}").text
    assert "人民银行博州中心支行未查到该人员的存贷款记录" in page and "2 人尚未反馈" in page
    assert re.search(r'id="step-DATA_COMPARE">\s*<p class="refused" data-step="DATA_COMPARE">[^<]*public-security',
                     page)
    assert re.search(r'name="override"[^>]*required', page)
    bureau = client_for(cases)
    login(bureau, "zhou")
    page = bureau.get(f"/cases/{world.case1}").text  # the bureau compares too, but may not override
    assert 'id="step-DATA_COMPARE"' not in page and 'data-step="DATA_COMPARE"' in page
    refused = county.post(f"/cases/{world.case1}/steps/DATA_COMPARE", data={"csrf": token, "note": "比对"})
    assert refused.status_code == 409 and "public-security" in problem(refused.text)
    done = county.post(f"/cases/{world.case1}/steps/DATA_COMPARE",
                       data={"csrf": token, "override": "公安局系统维护, 已电话核实"})
    assert done.status_code == 303
    page = county.get(done.headers["location"]).text
    assert "已完成: 数据比对" in page and "公安局系统维护, 已电话核实" in page and 'id="step-LABEL"' in page
    assert 'name="category"' in page
    labelled = county.post(f"/cases/{world.case1}/steps/LABEL", data={"csrf": token, "category": "MARGINAL"})
    assert labelled.status_code == 303
    detail = cases.case_detail("zhou", world.case1)
    assert detail.household is not None and (detail.household.monitoring_status, detail.household.category) == (
        "MONITORING", "MARGINAL")


def test_password_guessing_is_throttled(cases: Cases) -> None:
    from services.desk.sessions import LoginThrottle

    client = client_for(cases, login_throttle=LoginThrottle(free=3, base_delay=30.0))
    token = csrf_of(client.get("/login").text)
    for _ in range(3):
        answer = client.post("/login", data={"name": "cun", "password": "guess-guess-guess", "csrf": token})
        assert answer.status_code == 401
    answer = client.post("/login", data={"name": "cun", "password": PASSWORD, "csrf": token})
    assert answer.status_code == 429 and re.fullmatch(r"登录尝试过于频繁, 请 (30|29) 秒后再试", problem(answer.text))
    assert client.post("/login", data={"name": "xiang", "password": PASSWORD, "csrf": token}).status_code == 303
