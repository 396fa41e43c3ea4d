"""What the plan asks before risk elimination (P70), as a pure check (services/cases/elimination.py) and as the
workflow table applies it to NOMINATE_NOTICE (services/cases/workflow.py): every branch."""
from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import pytest

from schemas.thresholds import IncomeLines
from services.cases.elimination import (
    BLOCKING_RULES,
    PROFILE,
    ROSTER,
    IncomeStanding,
    elimination_problem,
    income_standing,
    yuan,
)
from services.cases.workflow import CaseFacts, Request, Role, Step, Workflow, allowed_now, check

ON = dt.date(2026, 3, 10)
LINES = IncomeLines(counties={"652702": {2025: Decimal("9600")}})


def line_of(county: str):  # noqa: ANN201 - a closure, as services/cases/profiles.py builds it
    return lambda year: LINES.line(county, year)


def standing(per_capita: str, year: int = 2025, line: str = "9000", source: str = PROFILE) -> IncomeStanding:
    return IncomeStanding(Decimal(per_capita), year, Decimal(line), source)


def test_income_at_the_line_passes() -> None:
    assert elimination_problem(standing("9000.00"), []) is None
    assert elimination_problem(standing("12500"), []) is None


def test_income_below_the_line_refuses_with_the_figures() -> None:
    problem = elimination_problem(standing("8200.00"), [])
    assert problem == "the income is not stable (P70): 人均纯收入 8200 元，低于 2025 年本县标准 9000 元"
    assert "人均纯收入 8999.99 元，低于 2025 年本县标准 9000 元" in (elimination_problem(standing("8999.99"), []) or "")


def test_the_profile_income_counts_for_its_own_year_and_county() -> None:
    found = income_standing(profile_income=Decimal("9500.00"), profile_year=2025, roster_income=Decimal("20000"),
                            on=ON, line=line_of("652702"))
    assert found == IncomeStanding(Decimal("9500.00"), 2025, Decimal("9600"), PROFILE)  # Alashankou's own line
    assert found is not None and found.below
    assert elimination_problem(found, []) == (
        "the income is not stable (P70): 人均纯收入 9500 元，低于 2025 年本县标准 9600 元")
    other = income_standing(profile_income=Decimal("9500.00"), profile_year=2024, roster_income=None, on=ON,
                            line=line_of("652702"))
    assert other == IncomeStanding(Decimal("9500.00"), 2024, Decimal("9000"), PROFILE)  # 2024: the default
    assert elimination_problem(other, []) is None


def test_without_a_profile_the_rosters_income_counts_as_last_years() -> None:
    found = income_standing(profile_income=None, profile_year=None, roster_income=Decimal("8200.00"), on=ON,
                            line=line_of("652701"))
    assert found == IncomeStanding(Decimal("8200.00"), 2025, Decimal("9000"), ROSTER)
    assert elimination_problem(found, []) == (
        "the income is not stable (P70): 人均纯收入 8200 元，低于 2025 年本县标准 9000 元 (花名册上年人均纯收入)")
    assert income_standing(profile_income=None, profile_year=None, roster_income=None, on=ON,
                           line=line_of("652701")) is None
    assert elimination_problem(None, []) is None  # nothing known: nothing to refuse on


@pytest.mark.parametrize("rule", BLOCKING_RULES)
@pytest.mark.parametrize("status", ["OPEN", "ACKNOWLEDGED"])
def test_each_open_guarantee_alert_refuses(rule: str, status: str) -> None:
    problem = elimination_problem(standing("9000"), [("MEDICAL_EXPENSE", "OPEN"), (rule, status)])
    assert problem is not None and problem.startswith("the guarantees are not consolidated (P70): open alert(s) ")
    assert rule in problem and problem.endswith("resolve them first")
    assert "MEDICAL_EXPENSE" not in problem


@pytest.mark.parametrize("rule", BLOCKING_RULES)
def test_a_resolved_alert_does_not_block(rule: str) -> None:
    assert elimination_problem(standing("9000"), [(rule, "RESOLVED")]) is None


def test_the_three_rules_and_their_names() -> None:
    assert BLOCKING_RULES == ("HOUSING_UNSAFE", "WATER_UNSAFE", "INSURANCE_GAP")
    problem = elimination_problem(standing("9000"), [("WATER_UNSAFE", "OPEN"), ("HOUSING_UNSAFE", "OPEN"),
                                                     ("WATER_UNSAFE", "ACKNOWLEDGED"), ("INSURANCE_GAP", "OPEN")])
    assert problem == ("the guarantees are not consolidated (P70): open alert(s) WATER_UNSAFE (饮水安全), "
                       "HOUSING_UNSAFE (住房安全), INSURANCE_GAP (基本医保); resolve them first")


def test_both_problems_in_one_line() -> None:
    problem = elimination_problem(standing("8200"), [("HOUSING_UNSAFE", "OPEN")])
    assert problem is not None and "\n" not in problem
    assert problem == ("the income is not stable (P70): 人均纯收入 8200 元，低于 2025 年本县标准 9000 元; "
                       "the guarantees are not consolidated (P70): open alert(s) HOUSING_UNSAFE (住房安全); "
                       "resolve them first")


def test_amounts_are_written_without_needless_cents() -> None:
    assert (yuan(Decimal("8200.00")), yuan(Decimal("8200.5")), yuan(Decimal("9000")), yuan(Decimal("0.00"))) == (
        "8200", "8200.50", "9000", "0")


# --- in the workflow table ------------------------------------------------------------------------------------
MONITORED = CaseFacts(workflow=Workflow.INCLUSION, step=Step.LABEL, monitoring_status="MONITORING",
                      labour_capacity="ABLE", authorised=True, notice_on=None, open_high_alerts=0,
                      comparisons_open=(), income=standing("9000"), alerts=())
NOMINATE = Request(Step.NOMINATE_NOTICE, Role.VILLAGE, ON)


def test_nominate_notice_passes_when_the_plan_is_satisfied() -> None:
    assert check(MONITORED, NOMINATE) is None
    assert check(dataclasses.replace(MONITORED, alerts=(("HOUSING_UNSAFE", "RESOLVED"),)), NOMINATE) is None


def test_nominate_notice_is_refused_below_the_line_or_with_an_open_guarantee_alert() -> None:
    below = check(dataclasses.replace(MONITORED, income=standing("8200")), NOMINATE)
    assert below is not None and below.reason == (
        "NOMINATE_NOTICE refused: the income is not stable (P70): 人均纯收入 8200 元，低于 2025 年本县标准 9000 元")
    for rule in BLOCKING_RULES:
        refused = check(dataclasses.replace(MONITORED, alerts=((rule, "OPEN"),)), NOMINATE)
        assert refused is not None and rule in refused.reason
    # the steps allowed now say why, before anyone submits (the desk shows it)
    [(step, why)] = allowed_now(dataclasses.replace(MONITORED, income=standing("8200")), Role.VILLAGE, ON)
    assert step == Step.NOMINATE_NOTICE and why is not None and "低于 2025 年本县标准 9000 元" in why


def test_todays_refusals_come_first() -> None:
    none = check(dataclasses.replace(MONITORED, labour_capacity="NONE", income=standing("8200")), NOMINATE)
    assert none is not None and "without labour capacity" in none.reason and "P70" not in none.reason
    high = check(dataclasses.replace(MONITORED, open_high_alerts=1, income=standing("8200")), NOMINATE)
    assert high is not None and "1 open HIGH alert" in high.reason


def test_other_steps_ignore_the_income() -> None:
    facts = dataclasses.replace(MONITORED, workflow=Workflow.ELIMINATION, step=Step.NOMINATE_NOTICE,
                                income=standing("100"), alerts=(("HOUSING_UNSAFE", "OPEN"),))
    assert check(facts, Request(Step.TOWNSHIP_VERIFY, Role.TOWNSHIP, ON)) is None
