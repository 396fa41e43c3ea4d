"""The household stage's computation and the alert records, as plain functions (used by `handlers`).

    household stage  event + person + household + medical history -> alert drafts, new history, village record
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.catalog import EVENT_FEEDS
from services.monitor.rules import (
    AlertDraft,
    HouseholdContext,
    MedicalStay,
    PersonContext,
    RegionalDraft,
    RuleConfig,
    evaluate,
)

__all__ = [
    "EVENT_KINDS",
    "HouseholdOutcome",
    "household_stage",
    "household_alert_record",
    "regional_alert_record",
]

EVENT_KINDS = frozenset(feed.schema for feed in EVENT_FEEDS)  # the catalogue's event records


@dataclass(frozen=True)
class HouseholdOutcome:
    drafts: list[AlertDraft]
    medical_history: list[MedicalStay] | None  # the household's new stays, when the event changed them
    village_record: dict[str, Any] | None  # VillageDisaster record, for disaster events


def household_stage(
    kind: str,
    event: Mapping[str, Any],
    person: PersonContext,
    household: HouseholdContext,
    stays: Sequence[MedicalStay],
    cfg: RuleConfig,
) -> HouseholdOutcome:
    """One event of a known household: the rules, the new medical history, the record for the village stage."""
    drafts, new_history = evaluate(kind, event, person, household, stays, cfg)
    village = None
    if kind == "povwatch.events.DisasterLoss":
        village = {"village_code": household.village_code, "household_id": household.household_id,
                   "event_id": event["event_id"], "disaster_date": event["disaster_date"]}
    return HouseholdOutcome(drafts, new_history, village)


def household_alert_record(draft: AlertDraft, raised_at: dt.datetime) -> dict[str, Any]:
    return {
        "alert_id": draft.alert_id, "household_id": draft.household_id, "village_code": draft.village_code,
        "rule": draft.rule.value, "severity": draft.severity.value, "reason": draft.reason,
        "event_ids": list(draft.event_ids), "occurred_at": draft.occurred_at, "raised_at": raised_at,
    }


def regional_alert_record(draft: RegionalDraft, raised_at: dt.datetime) -> dict[str, Any]:
    return {
        "alert_id": draft.alert_id, "region_code": draft.village_code, "rule": "REGIONAL_DISASTER",
        "severity": draft.severity.value, "reason": draft.reason, "household_ids": list(draft.household_ids),
        "event_ids": list(draft.event_ids), "window_start": draft.window_start, "window_end": draft.window_end,
        "occurred_at": draft.window_start, "raised_at": raised_at,
    }
