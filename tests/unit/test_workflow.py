"""services.cases.workflow, the pure transition table: every legal and illegal transition of both workflows, the
roles, the 5-day notice boundary, DATA_COMPARE's authorisation and comparison conditions (and the county override),
NOMINATE_NOTICE's refusals, re-entry into inclusion after ANNOUNCE_LABEL."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.cases.workflow import (
    ELIMINATION_STEPS,
    INCLUSION_STEPS,
    STEP_ROLES,
    CaseFacts,
    Request,
    Role,
    Step,
    Workflow,
    allowed_now,
    check,
    next_steps,
    status_after,
    workflow_of,
)

NOTICE = dt.date(2024, 7, 1)
LATER = dt.date(2024, 7, 20)  # long after every notice


def facts(step: Step | None, workflow: Workflow | None = None, *, status: str = "NOT_INCLUDED",
          labour: str = "ABLE", authorised: bool = True, notice_on: dt.date | None = NOTICE, high: int = 0,
          open_: tuple[str, ...] = (), closed: bool = False, notice_days: int = 5) -> CaseFacts:
    if workflow is None and step is not None:
        workflow = workflow_of(step, None, None)
    return CaseFacts(workflow=workflow, step=step, monitoring_status=status, labour_capacity=labour,
                     authorised=authorised, notice_on=notice_on, open_high_alerts=high, comparisons_open=open_,
                     closed=closed, notice_days=notice_days)


def role_for(step: Step) -> Role:
    return sorted(STEP_ROLES[step])[0]


# Each state of a case (its last step and workflow, the household's status) and the one step that may follow.
STATES: list[tuple[str, CaseFacts, Step]] = [
    ("new case, household not included", facts(None, status="NOT_INCLUDED"), Step.APPLY),
    ("new case, household risk eliminated", facts(None, status="RISK_ELIMINATED"), Step.APPLY),
    ("new case, household monitored", facts(None, status="MONITORING"), Step.NOMINATE_NOTICE),
    *[(f"inclusion after {a}", facts(a, Workflow.INCLUSION), b) for a, b in zip(INCLUSION_STEPS, INCLUSION_STEPS[1:])],
    ("inclusion after LABEL", facts(Step.LABEL, Workflow.INCLUSION, status="MONITORING"), Step.NOMINATE_NOTICE),
    *[(f"elimination after {a}", facts(a, Workflow.ELIMINATION, status="MONITORING"), b)
      for a, b in zip(ELIMINATION_STEPS, ELIMINATION_STEPS[1:])],
    ("after ANNOUNCE_LABEL", facts(Step.ANNOUNCE_LABEL, Workflow.ELIMINATION, status="RISK_ELIMINATED"), Step.APPLY),
]


@pytest.mark.parametrize(("state", "f", "legal"), STATES, ids=[s[0] for s in STATES])
def test_every_transition_legal_and_illegal(state: str, f: CaseFacts, legal: Step) -> None:
    assert next_steps(f) == (legal,)
    assert check(f, Request(legal, role_for(legal), LATER, authorised=legal == Step.APPLY)) is None
    for step in Step:
        if step == legal:
            continue
        refusal = check(f, Request(step, role_for(step), LATER))
        assert refusal is not None, f"{state}: {step} must be refused"
        assert refusal.reason.startswith(f"{step} is not allowed now")
        assert f"allowed now: {legal} (by " in refusal.reason
        assert "\n" not in refusal.reason


@pytest.mark.parametrize("step", list(Step))
def test_each_step_needs_its_role(step: Step) -> None:
    state = next(f for _, f, legal in STATES if legal == step)
    for role in Role:
        refusal = check(state, Request(step, role, LATER, authorised=step == Step.APPLY))
        if role in STEP_ROLES[step]:
            assert refusal is None, (step, role, refusal)
        else:
            assert refusal is not None and refusal.reason == (
                f"{step} needs a {'/'.join(sorted(STEP_ROLES[step]))} user, not a {role} user")


def test_the_roles_of_the_plan() -> None:
    assert STEP_ROLES[Step.APPLY] == STEP_ROLES[Step.PUBLIC_NOTICE] == {Role.VILLAGE}
    assert STEP_ROLES[Step.NOMINATE_NOTICE] == {Role.VILLAGE}
    assert STEP_ROLES[Step.TOWNSHIP_VERIFY] == {Role.TOWNSHIP}
    assert STEP_ROLES[Step.COUNTY_CONFIRM] == STEP_ROLES[Step.LABEL] == STEP_ROLES[Step.ANNOUNCE_LABEL] == {Role.COUNTY}
    assert STEP_ROLES[Step.DATA_COMPARE] == {Role.COUNTY, Role.BUREAU}


def test_a_closed_case_takes_no_step() -> None:
    f = facts(Step.PUBLIC_NOTICE, closed=True)
    assert next_steps(f) == ()
    refusal = check(f, Request(Step.TOWNSHIP_VERIFY, Role.TOWNSHIP, LATER))
    assert refusal is not None and "closed" in refusal.reason


@pytest.mark.parametrize(("day", "allowed"), [(0, False), (1, False), (4, False), (5, True), (6, True)])
def test_the_public_notice_stands_five_days(day: int, allowed: bool) -> None:
    f = facts(Step.PUBLIC_NOTICE)
    refusal = check(f, Request(Step.TOWNSHIP_VERIFY, Role.TOWNSHIP, NOTICE + dt.timedelta(days=day)))
    assert (refusal is None) == allowed
    if not allowed:
        assert refusal is not None
        assert refusal.reason == (f"TOWNSHIP_VERIFY refused: the public notice of 2024-07-01 has stood {day} day(s); "
                                  "it must stand 5 days (TOWNSHIP_VERIFY from 2024-07-06)")


def test_notice_days_is_configurable() -> None:
    f = facts(Step.PUBLIC_NOTICE, notice_days=7)
    assert check(f, Request(Step.TOWNSHIP_VERIFY, Role.TOWNSHIP, NOTICE + dt.timedelta(days=6))) is not None
    assert check(f, Request(Step.TOWNSHIP_VERIFY, Role.TOWNSHIP, NOTICE + dt.timedelta(days=7))) is None


def test_the_elimination_notice_has_no_five_day_rule() -> None:
    f = facts(Step.NOMINATE_NOTICE, Workflow.ELIMINATION, status="MONITORING")
    assert check(f, Request(Step.TOWNSHIP_VERIFY, Role.TOWNSHIP, NOTICE)) is None


def test_data_compare_needs_the_signed_authorisation() -> None:
    f = facts(Step.COUNTY_CONFIRM, authorised=False)
    refusal = check(f, Request(Step.DATA_COMPARE, Role.COUNTY, LATER))
    assert refusal is not None and "signed authorisation" in refusal.reason and "--authorised" in refusal.reason
    assert check(dataclasses.replace(f, authorised=True), Request(Step.DATA_COMPARE, Role.COUNTY, LATER)) is None
    # the refusal is also what allowed_now says of it
    assert allowed_now(f, Role.COUNTY, LATER) == [(Step.DATA_COMPARE, refusal.reason)]


def test_data_compare_waits_for_every_requested_department() -> None:
    f = facts(Step.COUNTY_CONFIRM, open_=("pboc", "natural-resources"))
    for role in (Role.COUNTY, Role.BUREAU):
        refusal = check(f, Request(Step.DATA_COMPARE, role, LATER))
        assert refusal is not None
        assert "not answered yet by pboc, natural-resources" in refusal.reason and "--override" in refusal.reason


def test_only_a_county_user_overrides_unanswered_comparisons() -> None:
    f = facts(Step.COUNTY_CONFIRM, open_=("pboc",))
    assert check(f, Request(Step.DATA_COMPARE, Role.COUNTY, LATER, override="银行逾期未回复")) is None
    bureau = check(f, Request(Step.DATA_COMPARE, Role.BUREAU, LATER, override="x"))
    assert bureau is not None and bureau.reason.endswith("only a county user may override unanswered comparison "
                                                         "requests")
    township = check(f, Request(Step.DATA_COMPARE, Role.TOWNSHIP, LATER, override="x"))
    assert township is not None and township.reason == "DATA_COMPARE needs a bureau/county user, not a township user"


def test_override_and_authorised_belong_to_their_steps() -> None:
    r = check(facts(Step.APPLY), Request(Step.PUBLIC_NOTICE, Role.VILLAGE, LATER, override="x"))
    assert r is not None and "--override applies to DATA_COMPARE only" in r.reason
    r = check(facts(Step.APPLY), Request(Step.PUBLIC_NOTICE, Role.VILLAGE, LATER, authorised=True))
    assert r is not None and "--authorised is recorded at APPLY" in r.reason
    assert check(facts(None), Request(Step.APPLY, Role.VILLAGE, LATER, authorised=False)) is None


def test_nominate_notice_refused_without_labour_capacity() -> None:
    f = facts(Step.LABEL, Workflow.INCLUSION, status="MONITORING", labour="NONE")
    refusal = check(f, Request(Step.NOMINATE_NOTICE, Role.VILLAGE, LATER))
    assert refusal is not None and "without labour capacity" in refusal.reason and "stays monitored" in refusal.reason
    for labour in ("ABLE", "WEAK"):
        assert check(dataclasses.replace(f, labour_capacity=labour),
                     Request(Step.NOMINATE_NOTICE, Role.VILLAGE, LATER)) is None


def test_nominate_notice_refused_while_a_high_alert_is_open() -> None:
    f = facts(None, status="MONITORING", high=2)
    refusal = check(f, Request(Step.NOMINATE_NOTICE, Role.VILLAGE, LATER))
    assert refusal is not None and "2 open HIGH alert(s)" in refusal.reason
    assert check(dataclasses.replace(f, open_high_alerts=0), Request(Step.NOMINATE_NOTICE, Role.VILLAGE, LATER)) is None


def test_re_entry_into_inclusion_after_announce_label() -> None:
    f = facts(Step.ANNOUNCE_LABEL, Workflow.ELIMINATION, status="RISK_ELIMINATED", notice_on=None, authorised=False)
    assert next_steps(f) == (Step.APPLY,)
    assert check(f, Request(Step.APPLY, Role.VILLAGE, LATER, authorised=True)) is None
    assert workflow_of(Step.APPLY, f.workflow, f.step) == Workflow.INCLUSION
    refusal = check(f, Request(Step.NOMINATE_NOTICE, Role.VILLAGE, LATER))
    assert refusal is not None and "allowed now: APPLY" in refusal.reason


def test_shared_steps_belong_to_the_current_workflow() -> None:
    assert workflow_of(Step.TOWNSHIP_VERIFY, Workflow.ELIMINATION, Step.NOMINATE_NOTICE) == Workflow.ELIMINATION
    assert workflow_of(Step.COUNTY_CONFIRM, Workflow.INCLUSION, Step.TOWNSHIP_VERIFY) == Workflow.INCLUSION
    assert workflow_of(Step.NOMINATE_NOTICE, Workflow.INCLUSION, Step.LABEL) == Workflow.ELIMINATION


def test_status_after_each_step() -> None:
    assert {s: status_after(s) for s in Step if status_after(s)} == {
        Step.LABEL: "MONITORING", Step.ANNOUNCE_LABEL: "RISK_ELIMINATED"}


def test_refusal_names_the_condition_of_the_next_step() -> None:
    f = facts(Step.PUBLIC_NOTICE)
    refusal = check(f, Request(Step.COUNTY_CONFIRM, Role.COUNTY, NOTICE + dt.timedelta(days=2)))
    assert refusal is not None
    assert refusal.reason == ("COUNTY_CONFIRM is not allowed now (last step: PUBLIC_NOTICE); allowed now: "
                              "TOWNSHIP_VERIFY (by township; but the public notice of 2024-07-01 has stood 2 day(s); "
                              "it must stand 5 days (TOWNSHIP_VERIFY from 2024-07-06))")
