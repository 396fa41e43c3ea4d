"""The alert vocabulary shared by the monitor (which raises alerts) and the case DB (which stores them).

The values are the symbols of the Avro enums in `schemas/avro/`: `Rule` is the union of
`povwatch.alerts.HouseholdRule` and `povwatch.alerts.RegionalRule`, `Severity` is `povwatch.alerts.Severity`
(a unit test keeps them equal).
"""
from __future__ import annotations

from enum import StrEnum

__all__ = ["Rule", "Severity"]


class Rule(StrEnum):
    DEATH_IN_HOUSEHOLD = "DEATH_IN_HOUSEHOLD"
    MEDICAL_EXPENSE = "MEDICAL_EXPENSE"
    DISASTER_LOSS = "DISASTER_LOSS"
    SCHOOL_DROPOUT = "SCHOOL_DROPOUT"
    ASSET_PURCHASE = "ASSET_PURCHASE"
    REGIONAL_DISASTER = "REGIONAL_DISASTER"


class Severity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"

