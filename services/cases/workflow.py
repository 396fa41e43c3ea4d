"""The plan's case workflows as a pure transition table: which step may follow which, who may take it, and why
a step is refused. No database here: callers pass a `CaseFacts` and get a `Refusal` or None.

    inclusion, the "six ones" (纳入监测 · 六个一)
        APPLY -> PUBLIC_NOTICE -> TOWNSHIP_VERIFY -> COUNTY_CONFIRM -> DATA_COMPARE -> LABEL
    risk elimination, the "four steps" (消除风险 · 四个步骤)
        NOMINATE_NOTICE -> TOWNSHIP_VERIFY -> COUNTY_CONFIRM -> ANNOUNCE_LABEL

A case with no workflow yet (opened by an alert) may APPLY, or, for a household already monitored, NOMINATE_NOTICE.
After LABEL the household is monitored: the case may NOMINATE_NOTICE (start elimination). After ANNOUNCE_LABEL the
risk is eliminated and the household may APPLY again later (a new round; the history is kept).

Conditions (docs/domain.md): DATA_COMPARE needs the signed authorisation recorded at APPLY, and every comparison
request of the case answered unless a county user overrides with a reason; TOWNSHIP_VERIFY of inclusion needs
the public notice to have stood `notice_days` (5) days; NOMINATE_NOTICE is refused for a household without
labour capacity (it stays monitored), while the household has an open HIGH alert, and - what the plan asks of
risk elimination (P70, services/cases/elimination.py) - while its latest per-capita income is below its county's
line or it has an open HOUSING_UNSAFE, WATER_UNSAFE or INSURANCE_GAP alert.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from services.cases.elimination import IncomeStanding, elimination_problem

__all__ = [
    "Workflow",
    "Step",
    "Role",
    "INCLUSION_STEPS",
    "ELIMINATION_STEPS",
    "STEP_ROLES",
    "STEP_LABELS",
    "ROLE_LABELS",
    "CaseFacts",
    "Request",
    "Refusal",
    "next_steps",
    "check",
    "allowed_now",
    "workflow_of",
    "status_after",
]


class Workflow(StrEnum):
    INCLUSION = "INCLUSION"
    ELIMINATION = "ELIMINATION"


class Step(StrEnum):
    APPLY = "APPLY"
    PUBLIC_NOTICE = "PUBLIC_NOTICE"
    TOWNSHIP_VERIFY = "TOWNSHIP_VERIFY"
    COUNTY_CONFIRM = "COUNTY_CONFIRM"
    DATA_COMPARE = "DATA_COMPARE"
    LABEL = "LABEL"
    NOMINATE_NOTICE = "NOMINATE_NOTICE"
    ANNOUNCE_LABEL = "ANNOUNCE_LABEL"


class Role(StrEnum):
    VILLAGE = "village"
    TOWNSHIP = "township"
    COUNTY = "county"
    BUREAU = "bureau"


INCLUSION_STEPS: tuple[Step, ...] = (Step.APPLY, Step.PUBLIC_NOTICE, Step.TOWNSHIP_VERIFY, Step.COUNTY_CONFIRM,
                                     Step.DATA_COMPARE, Step.LABEL)
ELIMINATION_STEPS: tuple[Step, ...] = (Step.NOMINATE_NOTICE, Step.TOWNSHIP_VERIFY, Step.COUNTY_CONFIRM,
                                       Step.ANNOUNCE_LABEL)

# Who may take each step: the village committee applies and posts notices, the township verifies on site, the
# county confirms, compares (with the prefecture's bureau) and labels.
STEP_ROLES: dict[Step, frozenset[Role]] = {
    Step.APPLY: frozenset({Role.VILLAGE}),
    Step.PUBLIC_NOTICE: frozenset({Role.VILLAGE}),
    Step.NOMINATE_NOTICE: frozenset({Role.VILLAGE}),
    Step.TOWNSHIP_VERIFY: frozenset({Role.TOWNSHIP}),
    Step.COUNTY_CONFIRM: frozenset({Role.COUNTY}),
    Step.DATA_COMPARE: frozenset({Role.COUNTY, Role.BUREAU}),
    Step.LABEL: frozenset({Role.COUNTY}),
    Step.ANNOUNCE_LABEL: frozenset({Role.COUNTY}),
}
OVERRIDE_ROLES = frozenset({Role.COUNTY})

STEP_LABELS: dict[Step, str] = {
    Step.APPLY: "申请", Step.PUBLIC_NOTICE: "公示", Step.TOWNSHIP_VERIFY: "乡镇核准",
    Step.COUNTY_CONFIRM: "县级确认", Step.DATA_COMPARE: "数据比对", Step.LABEL: "标注纳入",
    Step.NOMINATE_NOTICE: "提名公示", Step.ANNOUNCE_LABEL: "公告标注风险消除",
}
ROLE_LABELS: dict[Role, str] = {Role.VILLAGE: "村", Role.TOWNSHIP: "乡镇", Role.COUNTY: "县",
                                Role.BUREAU: "州乡村振兴局"}


@dataclass(frozen=True)
class CaseFacts:
    """What the table needs to know of a case and its household."""

    workflow: Workflow | None  # the workflow of the last step taken (None: no step yet)
    step: Step | None  # the last step taken
    monitoring_status: str  # the household's: NOT_INCLUDED, MONITORING, RISK_ELIMINATED
    labour_capacity: str  # ABLE, WEAK, NONE
    authorised: bool  # the signed authorisation to query deposits, vehicles and housing is on file
    notice_on: dt.date | None  # the day the current workflow's notice went up
    open_high_alerts: int  # open (not resolved) HIGH alerts of the household
    comparisons_open: tuple[str, ...]  # departments asked for this case that have not answered
    closed: bool = False  # a closed case takes no step
    notice_days: int = 5
    income: IncomeStanding | None = None  # the latest per-capita income against the county's line (P70)
    alerts: tuple[tuple[str, str], ...] = ()  # (rule, status) of the household's case alerts (P70)


@dataclass(frozen=True)
class Request:
    step: Step
    role: Role
    on: dt.date  # the day the step happened
    authorised: bool = False  # --authorised, at APPLY
    override: str | None = None  # --override REASON, at DATA_COMPARE


@dataclass(frozen=True)
class Refusal:
    reason: str  # one line: why, and what is allowed now


def workflow_of(step: Step, current: Workflow | None, current_step: Step | None) -> Workflow:
    """The workflow a step belongs to, here (TOWNSHIP_VERIFY and COUNTY_CONFIRM are in both)."""
    if step in (Step.APPLY, Step.PUBLIC_NOTICE, Step.DATA_COMPARE, Step.LABEL):
        return Workflow.INCLUSION
    if step in (Step.NOMINATE_NOTICE, Step.ANNOUNCE_LABEL):
        return Workflow.ELIMINATION
    return current or Workflow.INCLUSION


def next_steps(facts: CaseFacts) -> tuple[Step, ...]:
    """The steps that may follow, by order alone (conditions aside)."""
    if facts.closed:
        return ()
    if facts.step is None or facts.step == Step.ANNOUNCE_LABEL:
        return (Step.NOMINATE_NOTICE,) if facts.monitoring_status == "MONITORING" else (Step.APPLY,)
    if facts.step == Step.LABEL:
        return (Step.NOMINATE_NOTICE,)
    steps = INCLUSION_STEPS if facts.workflow == Workflow.INCLUSION else ELIMINATION_STEPS
    return (steps[steps.index(facts.step) + 1],)


def _condition(facts: CaseFacts, req: Request) -> str | None:
    """Why `req.step` cannot be taken now although it is next (None: it can)."""
    if req.step == Step.APPLY and not req.authorised:
        return None  # allowed, but DATA_COMPARE will need the authorisation (recorded at APPLY or later)
    if req.step == Step.TOWNSHIP_VERIFY and facts.workflow == Workflow.INCLUSION and facts.notice_on is not None:
        stood = (req.on - facts.notice_on).days
        if stood < facts.notice_days:
            ready = facts.notice_on + dt.timedelta(days=facts.notice_days)
            return (f"the public notice of {facts.notice_on} has stood {stood} day(s); it must stand "
                    f"{facts.notice_days} days (TOWNSHIP_VERIFY from {ready})")
    if req.step == Step.DATA_COMPARE:
        if not facts.authorised:
            return "the household's signed authorisation to query deposits, vehicles and housing is not on file " \
                   "(record it with --authorised)"
        if facts.comparisons_open and not req.override:
            return (f"comparison requests not answered yet by {', '.join(facts.comparisons_open)}; a county user "
                    "may complete DATA_COMPARE with --override REASON")
        if req.override and req.role not in OVERRIDE_ROLES:
            return "only a county user may override unanswered comparison requests"
    if req.step == Step.NOMINATE_NOTICE:
        if facts.labour_capacity == "NONE":
            return "a household without labour capacity is never labelled risk eliminated: it stays monitored"
        if facts.open_high_alerts:
            return f"the household has {facts.open_high_alerts} open HIGH alert(s); resolve them first"
        p70 = elimination_problem(facts.income, facts.alerts)
        if p70:
            return p70
    if req.override and req.step != Step.DATA_COMPARE:
        return "--override applies to DATA_COMPARE only"
    if req.authorised and req.step != Step.APPLY:
        return "--authorised is recorded at APPLY"
    return None


def check(facts: CaseFacts, req: Request) -> Refusal | None:
    """None if `req` may be taken now; else a one-line refusal saying which steps are allowed now and why."""
    allowed = next_steps(facts)
    if facts.closed:
        return Refusal("the case is closed: no step can be taken")
    if req.step not in allowed:
        return Refusal(f"{req.step} is not allowed now (last step: {facts.step or 'none'}); allowed now: "
                       f"{_describe(facts, req)}")
    if req.role not in STEP_ROLES[req.step]:
        roles = "/".join(sorted(STEP_ROLES[req.step]))
        return Refusal(f"{req.step} needs a {roles} user, not a {req.role} user")
    problem = _condition(facts, req)
    if problem:
        return Refusal(f"{req.step} refused: {problem}")
    return None


def _describe(facts: CaseFacts, req: Request) -> str:
    parts = []
    for step in next_steps(facts):
        probe = _condition(facts, Request(step, next(iter(STEP_ROLES[step])), req.on))
        roles = "/".join(sorted(STEP_ROLES[step]))
        parts.append(f"{step} (by {roles}" + (f"; but {probe})" if probe else ")"))
    return ", ".join(parts) or "none"


def allowed_now(facts: CaseFacts, role: Role, on: dt.date) -> list[tuple[Step, str | None]]:
    """For a user of `role` on day `on`: each next step and why it is refused (None: it can be taken)."""
    out = []
    for step in next_steps(facts):
        refusal = check(facts, Request(step, role, on, authorised=step == Step.APPLY))
        out.append((step, refusal.reason if refusal else None))
    return out


def status_after(step: Step) -> str | None:
    """The household's 监测状态 once `step` is taken (None: unchanged)."""
    if step == Step.LABEL:
        return "MONITORING"
    if step == Step.ANNOUNCE_LABEL:
        return "RISK_ELIMINATED"
    return None
