"""What the plan asks before a household is nominated for risk elimination (P70 消除风险: "income stable, the
guarantees and drinking water consolidated, risk stably gone"), as a pure check. No database here: the case
operations read the figures (services/cases/profiles.py) and services.cases.workflow refuses NOMINATE_NOTICE with
the line this module writes.

    income_standing(profile_income=, profile_year=, roster_income=, on=, line=)   -> IncomeStanding | None
    elimination_problem(income, alerts)                                          -> str | None (one line)

The income: the household's latest per-capita net income (人均纯收入) - the statistics survey team's, from its
profile (household_profiles.income_per_capita for income_year); without one, the roster's 上年人均纯收入
(households.per_capita_income) counts as the income of the year before the step's day - against its county's line
for that year (Settings.rules.income_lines.line(county, year): 9,000 CNY unless the county set its own). Below the
line refuses; at the line passes.

The guarantees: an open (OPEN or ACKNOWLEDGED, not RESOLVED) alert of HOUSING_UNSAFE (住房安全), WATER_UNSAFE
(饮水安全) or INSURANCE_GAP (基本医保) refuses; a RESOLVED one does not.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from schemas.alerts import Rule

__all__ = ["BLOCKING_RULES", "BLOCKING_TITLES", "IncomeStanding", "income_standing", "elimination_problem", "yuan"]

# the guarantees and drinking water the plan asks consolidated before the risk is eliminated
BLOCKING_RULES: tuple[str, ...] = (Rule.HOUSING_UNSAFE.value, Rule.WATER_UNSAFE.value, Rule.INSURANCE_GAP.value)
BLOCKING_TITLES: dict[str, str] = {Rule.HOUSING_UNSAFE.value: "住房安全", Rule.WATER_UNSAFE.value: "饮水安全",
                                   Rule.INSURANCE_GAP.value: "基本医保"}
PROFILE = "profile"  # the income comes from the household's profile (统计局 住户收入, profiles.household)
ROSTER = "roster"  # from the bureau's roster (上年人均纯收入), taken as last year's


@dataclass(frozen=True)
class IncomeStanding:
    """A household's latest per-capita net income against its county's line for the same year."""

    per_capita: Decimal
    year: int
    line: Decimal
    source: str  # PROFILE or ROSTER

    @property
    def below(self) -> bool:
        return self.per_capita < self.line


def yuan(amount: Decimal) -> str:
    """8200 for 8200.00, 8200.50 for 8200.5: an amount of CNY as the refusal writes it."""
    value = Decimal(amount)
    if value == value.to_integral_value():
        return str(int(value))
    return str(value.quantize(Decimal("0.01")))


def income_standing(*, profile_income: Decimal | None, profile_year: int | None, roster_income: Decimal | None,
                    on: dt.date, line: Callable[[int], Decimal]) -> IncomeStanding | None:
    """The income that counts on day `on`: the profile's for its year, else the roster's as the year before `on`'s
    (None when neither is known). `line(year)` is the county's line for a year."""
    if profile_income is not None and profile_year is not None:
        return IncomeStanding(Decimal(profile_income), profile_year, Decimal(line(profile_year)), PROFILE)
    if roster_income is not None:
        year = on.year - 1
        return IncomeStanding(Decimal(roster_income), year, Decimal(line(year)), ROSTER)
    return None


def elimination_problem(income: IncomeStanding | None, alerts: Iterable[tuple[str, str]]) -> str | None:
    """Why the household cannot be nominated for risk elimination (one line), or None. `alerts`: (rule, status) of
    the household's case alerts."""
    problems = []
    if income is not None and income.below:
        figures = (f"人均纯收入 {yuan(income.per_capita)} 元，低于 {income.year} 年本县标准 {yuan(income.line)} 元"
                   + (" (花名册上年人均纯收入)" if income.source == ROSTER else ""))
        problems.append(f"the income is not stable (P70): {figures}")
    blocking = list(dict.fromkeys(rule for rule, status in alerts
                                  if status != "RESOLVED" and rule in BLOCKING_RULES))
    if blocking:
        listed = ", ".join(f"{rule} ({BLOCKING_TITLES[rule]})" for rule in blocking)
        problems.append(f"the guarantees are not consolidated (P70): open alert(s) {listed}; resolve them first")
    return "; ".join(problems) or None
