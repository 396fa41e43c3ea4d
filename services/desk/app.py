"""The desk as a FastAPI application: server-rendered pages (Jinja2) over the case operations (`DeskCases`).

    GET  /login                     the log-in form (every visitor gets a session, so the form has a CSRF token)
    POST /login                     name + password (Cases.authenticate); a NEW session on success, stored in the
                                    case DB; failures slow the next try by name and client address (429 with
                                    the seconds to wait; LoginThrottle), never lock the real user out
    POST /logout                    ends the session in the case DB (on every desk process), deletes the cookie
    GET  /cases                     the worklist: the user's open cases (their region only), severity then age;
                                    filters county, township, rule, severity, step as GET parameters
    GET  /cases/{id}                a case: household, members, alerts and evidence, comparison answers, history,
                                    a form per step allowed now, refused steps with why (the view is audited)
    POST /cases/{id}/steps/{STEP}   take a step: on (YYYY-MM-DD), note, authorised, override, category (LABEL)
    POST /cases/{id}/alerts/{aid}/acknowledge   an OPEN alert -> ACKNOWLEDGED (any user of the region)
    POST /cases/{id}/resolve        close the case, resolving its alerts (township, county, bureau; a note)
    GET  /households/{id}           the household as the plan sees it (the case page shows the same block):
                                    members, latest facts per domain, income against the line, open alerts
    POST /screening/{id}/close      集中排查 "已排查": a screening task of the worklist closed with a note (township,
                                    county, bureau; its period running; the worklist lists the open ones)
    GET  /healthz, /static/desk.css

Every POST carries the session's CSRF token (403 without it or with another). Every page but /login, /healthz and
/static needs a logged-in session (a page asks for log-in with a redirect; a POST is refused with 403). A case
outside the user's region is 404, as if it did not exist. What the store refuses (a step out of order, the
wrong role, the 5-day notice...) is shown as its one line on the case page (409). Every error is a page with one
line; a traceback only ever goes to the server's log.

The app does no I/O of its own: `create_app` is given the case operations, the session secret, the cookie policy
and the clock, so the unit tests drive it with TestClient on a SQLite case DB.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.catalog import COMPARISON_DEPARTMENTS
from schemas.errors import DatabaseUnavailable, PovwatchError
from services.casedb.errors import NotFound, NotInRegion, StepRefused
from services.cases.profile_view import ProfileView
from services.cases.regions import subject_label
from services.cases.screening import CLOSER_ROLES, RoleRefused
from services.cases.users import UserView
from services.cases.views import AlertView, CaseDetail, CaseSummary
from services.cases.workflow import Role, Step
from services.desk.forms import (
    ALERT_STATUS_LABELS,
    CATEGORY_LABELS,
    FOCUS_CATEGORIES,
    MONITORING_LABELS,
    NOTE_MAX,
    RESOLVER_ROLES,
    RULE_LABELS,
    SEVERITY_LABELS,
    STATUS_LABELS,
    FormError,
    fields_for,
    override_possible,
    parse_filters,
    parse_step,
    role_label,
    step_label,
)
from services.desk.sessions import (
    COOKIE,
    NAME_KEPT,
    DeskSession,
    LoginThrottle,
    SessionCodec,
    cookie_options,
    csrf_ok,
)

__all__ = ["DeskCases", "create_app", "TEMPLATES", "STATIC"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"
_LOG = logging.getLogger("povwatch.desk")
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # the pages hold names: nothing kept in shared caches or the browser's history
}
_DONE = {"ACKNOWLEDGE": "已确认预警", "RESOLVE": "已结案, 本案预警均已解除"}
_TITLES = {400: "输入有误", 401: "未登录", 403: "禁止访问", 404: "未找到", 405: "方法不允许", 409: "操作被拒绝",
           429: "请稍后再试", 500: "内部错误", 503: "暂不可用"}


class DeskCases(Protocol):
    """The case operations the desk needs (services.cases.store.Cases provides them)."""

    def authenticate(self, name: str, password: str) -> UserView | None: ...

    def open_session(self, sid: str, name: str, max_age: int) -> None: ...

    def session_user(self, sid: str) -> str | None: ...

    def end_session(self, sid: str) -> None: ...

    def user(self, name: str) -> UserView: ...

    def visible_cases(self, user: UserView, *, county: str | None = None, township: str | None = None,
                      rule: str | None = None, severity: str | None = None,
                      step: str | None = None) -> list[CaseSummary]: ...

    def case_detail(self, user: UserView, case_id: int) -> CaseDetail: ...

    def advance(self, user: UserView, case_id: int, step: str, *, on: dt.date | None = None,
                note: str | None = None, authorised: bool = False, override: str | None = None,
                category: str | None = None) -> CaseDetail: ...

    def acknowledge_alert(self, user: UserView, alert_id: int) -> AlertView: ...

    def resolve_case(self, user: UserView, case_id: int, note: str) -> CaseDetail: ...

    def household_profile(self, user: UserView, household_id: str, *, audited: bool = True) -> ProfileView: ...


class DeskScreening(Protocol):
    """The screening operations the desk needs (services.cases.screening_store.Screening provides them)."""

    def visible_tasks(self, user: UserView) -> tuple[list[Any], int]: ...

    def close_by_hand(self, user: UserView, task_id: int, note: str, *, period: str | None = None) -> Any: ...


class _Refused(Exception):
    """A page answered with a status and one line (raised inside a route, rendered by the handler)."""

    def __init__(self, status: int, problem: str) -> None:
        super().__init__(problem)
        self.status = status
        self.problem = problem


def _safe_next(value: str | None) -> str:
    """Where to go after log-in: a path on this desk only (no scheme, no host, no //)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value \
            and not value.startswith("/login"):
        return value
    return "/cases"


def create_app(cases: DeskCases, *, secret: str, secure_cookies: bool = True,
               today: Callable[[], dt.date] = dt.date.today, max_age: int | None = None,
               login_throttle: LoginThrottle | None = None, screening: DeskScreening | None = None) -> FastAPI:
    """The desk over `cases`. `secret` signs the session cookies (≥ 16 characters); `secure_cookies=False` only
    for plain HTTP on this machine (POVWATCH_DESK_INSECURE_COOKIES=1); `today` is the prefecture's date;
    `login_throttle` slows failed log-ins down by name and address (default: LoginThrottle()); `screening`, when
    given, puts the
    user's open screening tasks on the worklist with their "已排查" form."""
    codec = SessionCodec(secret) if max_age is None else SessionCodec(secret, max_age=max_age)
    throttle = login_throttle or LoginThrottle()
    cookie = cookie_options(secure=secure_cookies, max_age=codec.max_age)
    templates = Jinja2Templates(directory=str(TEMPLATES))
    templates.env.globals.update(
        role_label=role_label, step_label=step_label, rule_labels=RULE_LABELS, severity_labels=SEVERITY_LABELS,
        status_labels=STATUS_LABELS, alert_status_labels=ALERT_STATUS_LABELS,
        monitoring_labels=MONITORING_LABELS, category_labels=CATEGORY_LABELS, focus_categories=FOCUS_CATEGORIES,
        resolver_roles=tuple(role.value for role in RESOLVER_ROLES),
        department_titles={d.department: f"{d.title} · {d.what}" for d in COMPARISON_DEPARTMENTS},
        subject_label=subject_label)
    app = FastAPI(title="povwatch desk", docs_url=None, redoc_url=None, openapi_url=None)

    # --- sessions ------------------------------------------------------------------------------------------
    def session_of(request: Request) -> DeskSession | None:
        """The cookie's session; a logged-in one only while the case DB holds it (not logged out, not ended by a
        password change or by disabling the user - on any desk process)."""
        session = codec.load(request.cookies.get(COOKIE))
        if session is not None and session.user is not None and cases.session_user(session.sid) != session.user:
            return None
        return session

    def user_of(session: DeskSession | None) -> UserView | None:
        if session is None or session.user is None:
            return None
        try:
            user = cases.user(session.user)
        except (NotFound, StepRefused):  # removed or deactivated since logging in
            return None
        return user if user.active else None

    def page(request: Request, name: str, session: DeskSession, context: Mapping[str, Any], *,
             status: int = 200, user: UserView | None = None) -> HTMLResponse:
        response = templates.TemplateResponse(
            request, name, {"csrf": session.csrf, "user": user, "message": None, "error": None, **context},
            status_code=status)
        if request.cookies.get(COOKIE) is None or codec.load(request.cookies.get(COOKIE)) != session:
            response.set_cookie(COOKIE, codec.dump(session), **cookie)
        return response

    def logged_in(request: Request) -> tuple[DeskSession, UserView]:
        """The session and its user, or a redirect to the log-in page (raised as _LoginFirst)."""
        session = session_of(request)
        user = user_of(session)
        if session is None or user is None:
            raise _LoginFirst(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return session, user

    def posted(request: Request, csrf: str | None) -> tuple[DeskSession, UserView]:
        """A POST by a logged-in user with the session's CSRF token; 403 otherwise."""
        session = session_of(request)
        if not csrf_ok(session, csrf):
            raise _Refused(403, "表单已失效或缺少校验码 (CSRF), 请刷新页面后重试")
        user = user_of(session)
        if session is None or user is None:
            raise _Refused(403, "未登录或登录已过期, 请重新登录")
        return session, user

    # --- errors: a page with one line ---------------------------------------------------------------------
    def error_page(request: Request, status: int, problem: str) -> HTMLResponse:
        session = session_of(request) or codec.new()
        return page(request, "error.html", session,
                    {"status": status, "title": _TITLES.get(status, "错误"), "problem": problem},
                    status=status, user=user_of(session))

    @app.exception_handler(_Refused)
    async def on_refused(request: Request, exc: _Refused) -> Response:
        return error_page(request, exc.status, exc.problem)

    @app.exception_handler(_LoginFirst)
    async def on_login_first(request: Request, exc: _LoginFirst) -> Response:
        return RedirectResponse("/login?" + urlencode({"next": exc.next}), status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        problem = {404: "没有这个页面", 405: "此地址不接受这种请求"}.get(exc.status_code, str(exc.detail))
        return error_page(request, exc.status_code, problem)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = sorted({str(err.get("loc", ("", "?"))[-1]) for err in exc.errors()})
        return error_page(request, 400, f"请求不完整或有误: {', '.join(fields)}")

    @app.exception_handler(DatabaseUnavailable)
    async def on_db_down(request: Request, exc: DatabaseUnavailable) -> Response:
        _LOG.warning("case database unavailable: %s", exc)
        return error_page(request, 503, "案件数据库暂时无法访问, 请稍后重试")

    @app.exception_handler(PovwatchError)
    async def on_povwatch(request: Request, exc: PovwatchError) -> Response:
        _LOG.error("%s %s: %s", request.method, request.url.path, exc)
        return error_page(request, 500, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        _LOG.exception("%s %s failed", request.method, request.url.path)
        return error_page(request, 500, "内部错误, 已记入服务日志")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Any]) -> Response:
        response: Response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    # --- pages ---------------------------------------------------------------------------------------------
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/static/desk.css", include_in_schema=False)
    def stylesheet() -> FileResponse:
        return FileResponse(STATIC / "desk.css", media_type="text/css")

    @app.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/cases", status_code=303)

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:
        session = session_of(request)
        if user_of(session) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return page(request, "login.html", session or codec.new(), {"next": _safe_next(next), "name": ""})

    @app.post("/login", response_class=HTMLResponse)
    def login(request: Request, name: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
              csrf: Annotated[str | None, Form()] = None, next: Annotated[str | None, Form()] = None) -> Response:
        session = session_of(request)
        if not csrf_ok(session, csrf):
            raise _Refused(403, "表单已失效或缺少校验码 (CSRF), 请刷新登录页后重试")
        assert session is not None
        name = name.strip()[:NAME_KEPT + 1]  # a longer name is no user's: kept no further than needed to say so
        address = request.client.host if request.client is not None else "-"
        wait = throttle.wait(name, address)
        if wait > 0:
            return page(request, "login.html", session, {
                "next": _safe_next(next), "name": name[:NAME_KEPT],
                "error": f"登录尝试过于频繁, 请 {math.ceil(wait)} 秒后再试"}, status=429)
        user = cases.authenticate(name, password) if name and password else None
        if user is None or not user.active:
            throttle.failed(name, address)
            return page(request, "login.html", session, {"next": _safe_next(next), "name": name[:NAME_KEPT],
                                                         "error": "用户名或密码错误"}, status=401)
        throttle.succeeded(name, address)
        codec.revoke(session)  # the anonymous session's token is not reused after log-in
        fresh = codec.new(user.name)
        cases.open_session(fresh.sid, user.name, codec.max_age)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(COOKIE, codec.dump(fresh), **cookie)
        return response

    @app.post("/logout")
    def logout(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
        session = session_of(request)
        if not csrf_ok(session, csrf):
            raise _Refused(403, "表单已失效或缺少校验码 (CSRF), 请刷新页面后重试")
        assert session is not None
        if session.user is not None:
            cases.end_session(session.sid)  # every desk process refuses the cookie from now on
        codec.revoke(session)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", secure=secure_cookies, httponly=True, samesite="lax")
        return response

    @app.get("/cases", response_class=HTMLResponse)
    def worklist(request: Request) -> Response:
        session, user = logged_in(request)
        try:
            filters = parse_filters(request.query_params)
        except FormError as exc:
            raise _Refused(400, str(exc)) from None
        screened = request.query_params.get("screened", "")
        message = f"已排查: 排查任务 #{screened} 已办结" if screened.isdigit() and len(screened) < 12 else None
        return show_worklist(request, session, user, filters, message=message)

    def show_worklist(request: Request, session: DeskSession, user: UserView, filters: Any, *, status: int = 200,
                      message: str | None = None, error: str | None = None) -> Response:
        rows = cases.visible_cases(user, county=filters.county, township=filters.township, rule=filters.rule,
                                   severity=filters.severity, step=filters.step)
        tasks, total = screening.visible_tasks(user) if screening is not None else ([], 0)
        return page(request, "worklist.html", session, {
            "cases": rows, "filters": filters, "steps": list(Step), "today": today(),
            "screening": screening is not None, "tasks": tasks, "tasks_total": total,
            "may_screen": user.role in CLOSER_ROLES, "note_max": NOTE_MAX,
            "message": message, "error": error}, status=status, user=user)

    def close_screening(request: Request, task_id: int, csrf: Annotated[str | None, Form()] = None,
                        note: Annotated[str, Form()] = "", period: Annotated[str, Form()] = "") -> Response:
        session, user = posted(request, csrf)
        if screening is None:  # not routed then; kept for the type checker
            raise _Refused(404, "没有这个页面")
        note = note.strip()
        try:  # the store checks region, role, period, state and note (a note over NOTE_MAX is refused, not cut)
            screening.close_by_hand(user, task_id, note[:NOTE_MAX + 1], period=period[:32] or None)
        except (NotFound, NotInRegion):
            raise _Refused(404, f"没有编号为 {task_id} 的排查任务, 或该任务不在您的辖区内") from None
        except RoleRefused as exc:
            raise _Refused(403, f"村级用户不能标记已排查 (请通过干部走访渠道上报): {exc}") from None
        except StepRefused as exc:
            bad_input = not note or len(note) > NOTE_MAX
            return show_worklist(request, session, user, parse_filters({}), status=400 if bad_input else 409,
                                 error=f"未标记已排查: {exc}")
        return RedirectResponse(f"/cases?screened={task_id}#screening", status_code=303)

    if screening is not None:  # a desk without the screening operations has no such route
        app.post("/screening/{task_id}/close", response_class=HTMLResponse)(close_screening)

    def show_case(request: Request, session: DeskSession, user: UserView, case_id: int, *, status: int = 200,
                  message: str | None = None, error: str | None = None) -> Response:
        detail = case_detail(user, case_id)
        role = Role(user.role)
        forms = {a.step: fields_for(Step(a.step), role) for a in detail.allowed if a.step in Step.__members__}
        unanswered = sum(c.unanswered for c in detail.comparisons)
        overridable = {a.step for a in detail.allowed if a.step in Step.__members__ and override_possible(
            Step(a.step), role, refused=a.refusal is not None, authorised=detail.authorised, unanswered=unanswered)}
        return page(request, "case.html", session, {"case": detail, "forms": forms, "overridable": overridable,
                                                    "today": today(), "profile": profile_of(user, detail),
                                                    "message": message, "error": error}, status=status, user=user)

    def case_detail(user: UserView, case_id: int) -> CaseDetail:
        try:
            return cases.case_detail(user, case_id)
        except (NotFound, NotInRegion):  # another region's case looks like no case at all
            raise _Refused(404, _no_case(case_id)) from None

    def profile_of(user: UserView, detail: CaseDetail) -> ProfileView | None:
        """The household block of a household's case page (its view is the case's, audited as VIEW_CASE)."""
        if detail.case.subject_kind != "household":
            return None
        try:
            return cases.household_profile(user, detail.case.household_or_region, audited=False)
        except (NotFound, NotInRegion):
            return None

    @app.get("/households/{household_id}", response_class=HTMLResponse)
    def household_page(request: Request, household_id: str) -> Response:
        session, user = logged_in(request)
        try:  # another region's household looks like no household at all (the refusal is audited)
            profile = cases.household_profile(user, household_id[:64])
        except (NotFound, NotInRegion):
            raise _Refused(404, f"没有户编号为 {household_id[:64]} 的农户, 或该户不在您的辖区内") from None
        return page(request, "household.html", session, {"profile": profile}, user=user)

    @app.get("/cases/{case_id}", response_class=HTMLResponse)
    def case_page(request: Request, case_id: int, done: str | None = None) -> Response:
        session, user = logged_in(request)
        message = _DONE.get(done or "") or (f"已完成: {step_label(done)}" if done in Step.__members__ else None)
        return show_case(request, session, user, case_id, message=message)

    @app.post("/cases/{case_id}/steps/{step_name}", response_class=HTMLResponse)
    def take_step(request: Request, case_id: int, step_name: str, csrf: Annotated[str | None, Form()] = None,
                  on: Annotated[str, Form()] = "", note: Annotated[str, Form()] = "",
                  authorised: Annotated[str, Form()] = "", override: Annotated[str, Form()] = "",
                  category: Annotated[str, Form()] = "") -> Response:
        session, user = posted(request, csrf)
        try:
            wanted = parse_step(step_name, {"on": on, "note": note, "authorised": authorised,
                                            "override": override, "category": category}, today=today())
        except FormError as exc:
            case_detail(user, case_id)  # another region's case stays a 404
            return show_case(request, session, user, case_id, status=400, error=str(exc))
        try:
            cases.advance(user, case_id, wanted.step.value, on=wanted.on, note=wanted.note,
                          authorised=wanted.authorised, override=wanted.override, category=wanted.category)
        except (NotFound, NotInRegion):
            raise _Refused(404, _no_case(case_id)) from None
        except StepRefused as exc:
            return show_case(request, session, user, case_id, status=409,
                             error=f"{step_label(wanted.step)}未办理: {exc}")
        return RedirectResponse(f"/cases/{case_id}?done={wanted.step.value}", status_code=303)

    @app.post("/cases/{case_id}/alerts/{alert_id}/acknowledge", response_class=HTMLResponse)
    def acknowledge(request: Request, case_id: int, alert_id: int,
                    csrf: Annotated[str | None, Form()] = None) -> Response:
        session, user = posted(request, csrf)
        try:
            alert = cases.acknowledge_alert(user, alert_id)
        except (NotFound, NotInRegion):
            raise _Refused(404, f"没有编号为 {alert_id} 的预警, 或该预警不在您的辖区内") from None
        except StepRefused as exc:
            return show_case(request, session, user, case_id, status=409, error=f"预警未确认: {exc}")
        return RedirectResponse(f"/cases/{alert.case_id}?done=ACKNOWLEDGE", status_code=303)

    @app.post("/cases/{case_id}/resolve", response_class=HTMLResponse)
    def resolve(request: Request, case_id: int, csrf: Annotated[str | None, Form()] = None,
                note: Annotated[str, Form()] = "") -> Response:
        session, user = posted(request, csrf)
        note = note.strip()
        if not note:
            case_detail(user, case_id)
            return show_case(request, session, user, case_id, status=400, error="结案须填写理由")
        if len(note) > NOTE_MAX:
            case_detail(user, case_id)
            return show_case(request, session, user, case_id, status=400,
                             error=f"理由过长 ({len(note)} 字, 最多 {NOTE_MAX} 字)")
        try:
            cases.resolve_case(user, case_id, note)
        except (NotFound, NotInRegion):
            raise _Refused(404, _no_case(case_id)) from None
        except StepRefused as exc:
            return show_case(request, session, user, case_id, status=409, error=f"未结案: {exc}")
        return RedirectResponse(f"/cases/{case_id}?done=RESOLVE", status_code=303)

    return app


class _LoginFirst(Exception):
    """Not logged in: the page redirects to /login?next=<this page>."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next = next_path


def _no_case(case_id: int) -> str:
    return f"没有编号为 {case_id} 的案件, 或该案件不在您的辖区内"
