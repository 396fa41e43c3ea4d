"""The alert vocabulary shared by the monitor (which raises alerts) and the case DB (which stores them).

The values are the symbols of the Avro enums in `schemas/avro/`: `Rule` is the union of
`povwatch.alerts.HouseholdRule` and `povwatch.alerts.RegionalRule`, `Severity` is `povwatch.alerts.Severity`
(a unit test keeps them equal).
"""
from __future__ import annotations

from enum import StrEnum

__all__ = ["Rule", "Severity", "severity_rank", "REGIONAL_RULES", "HOUSEHOLD_RULES"]


class Rule(StrEnum):
    DEATH_IN_HOUSEHOLD = "DEATH_IN_HOUSEHOLD"
    MEDICAL_EXPENSE = "MEDICAL_EXPENSE"
    DISASTER_LOSS = "DISASTER_LOSS"
    SCHOOL_DROPOUT = "SCHOOL_DROPOUT"
    ASSET_PURCHASE = "ASSET_PURCHASE"
    INCOME_BELOW_LINE = "INCOME_BELOW_LINE"
    INCOME_DROP = "INCOME_DROP"
    JOB_LOSS = "JOB_LOSS"
    HOUSING_UNSAFE = "HOUSING_UNSAFE"
    WATER_UNSAFE = "WATER_UNSAFE"
    ACCIDENT_INJURY = "ACCIDENT_INJURY"
    SERIOUS_ILLNESS = "SERIOUS_ILLNESS"
    CHRONIC_DISEASE = "CHRONIC_DISEASE"
    SEVERE_DISABILITY = "SEVERE_DISABILITY"
    SAFETY_NET = "SAFETY_NET"
    INSURANCE_GAP = "INSURANCE_GAP"
    LOAN_OVERDUE = "LOAN_OVERDUE"
    REPORTED_RISK = "REPORTED_RISK"
    REGIONAL_DISASTER = "REGIONAL_DISASTER"
    REGIONAL_WATER = "REGIONAL_WATER"
    REGIONAL_RETURNS = "REGIONAL_RETURNS"
    REGIONAL_ILLNESS = "REGIONAL_ILLNESS"
    REGIONAL_RISK_CLUSTER = "REGIONAL_RISK_CLUSTER"
    COLLECTIVE_INCOME_DROP = "COLLECTIVE_INCOME_DROP"


class Severity(StrEnum):
    """LOW < MEDIUM < HIGH: the one order of severities (`rank`, `severity_rank`); every ranking uses it."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"

    @property
    def rank(self) -> int:
        """0 for LOW, 1 for MEDIUM, 2 for HIGH: compare severities by this, never by their names."""
        return _SEVERITY_ORDER.index(self)


_SEVERITY_ORDER: tuple[Severity, ...] = (Severity.LOW, Severity.MEDIUM, Severity.HIGH)


def severity_rank(value: str) -> int:
    """The rank of a severity given by its name ("LOW" 0, "MEDIUM" 1, "HIGH" 2); ValueError for another name."""
    return Severity(value).rank


REGIONAL_RULES: frozenset[Rule] = frozenset({
    Rule.REGIONAL_DISASTER, Rule.REGIONAL_WATER, Rule.REGIONAL_RETURNS, Rule.REGIONAL_ILLNESS,
    Rule.REGIONAL_RISK_CLUSTER, Rule.COLLECTIVE_INCOME_DROP})
HOUSEHOLD_RULES: tuple[Rule, ...] = tuple(r for r in Rule if r not in REGIONAL_RULES)
