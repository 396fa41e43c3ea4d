"""The monitor's steps as plain functions: what each Faust agent computes, without Kafka or Faust.

    person stage     event + roster person        -> enriched event (re-keyed by household_id) | unmatched
    household stage  enriched event + household + history -> alert draft, new history, village record
    village stage    village records + fired windows -> regional draft

Table values are JSON-safe dicts/lists (Faust serialises tables as JSON); the helpers here convert them.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.monitor.rules import (
    AlertDraft,
    HouseholdContext,
    MedicalStay,
    PersonContext,
    RegionalDraft,
    RuleConfig,
    VillageRecord,
    evaluate,
    regional_disaster,
)

__all__ = [
    "EVENT_KINDS",
    "person_to_table",
    "person_from_table",
    "household_to_table",
    "HouseholdOutcome",
    "household_stage",
    "village_stage",
    "household_alert_record",
    "regional_alert_record",
]

EVENT_KINDS = (
    "povwatch.events.RegistrationChange",
    "povwatch.events.VehiclePurchase",
    "povwatch.events.Hospitalization",
    "povwatch.events.DisasterLoss",
    "povwatch.events.Dropout",
)


def person_to_table(person: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "person_key": person["person_key"], "household_id": person["household_id"],
        "relation": person["relation"], "sex": person["sex"], "birth_date": person["birth_date"].isoformat(),
        "village_code": person["village_code"],
    }


def person_from_table(row: Mapping[str, Any]) -> PersonContext:
    return PersonContext(row["person_key"], row["household_id"], dt.date.fromisoformat(row["birth_date"]),
                         row["relation"], row["village_code"])


def person_avro(row: Mapping[str, Any], source: Mapping[str, Any], ingested_at: dt.datetime) -> dict[str, Any]:
    """The Person record embedded in an EnrichedEvent."""
    return {**row, "birth_date": dt.date.fromisoformat(row["birth_date"]), "ingested_at": ingested_at,
            "source": dict(source)}


def household_to_table(household: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "household_id": household["household_id"], "village_code": household["village_code"],
        "monitoring_status": household["monitoring_status"],
        "per_capita_income": str(household["per_capita_income"]), "household_size": household["household_size"],
        "category": household["category"], "labour_capacity": household["labour_capacity"],
    }


def _history_from_table(rows: list[list[Any]] | None) -> list[MedicalStay]:
    return [MedicalStay(eid, dt.date.fromisoformat(day), Decimal(amount), bool(high))
            for eid, day, amount, high in rows or []]


def _history_to_table(stays: list[MedicalStay]) -> list[list[Any]]:
    return [[s.event_id, s.admission_date.isoformat(), str(s.out_of_pocket), s.high] for s in stays]


@dataclass(frozen=True)
class HouseholdOutcome:
    drafts: list[AlertDraft]
    medical_history: list[list[Any]] | None  # new table value, when the event changed it
    village_record: dict[str, Any] | None  # VillageDisaster record, for disaster events


def household_stage(
    kind: str,
    event: Mapping[str, Any],
    person: PersonContext,
    household_row: Mapping[str, Any],
    medical_rows: list[list[Any]] | None,
    cfg: RuleConfig,
) -> HouseholdOutcome:
    household = HouseholdContext.from_record(household_row)
    history = _history_from_table(medical_rows)
    drafts, new_history = evaluate(kind, event, person, household, history, cfg)
    village = None
    if kind == "povwatch.events.DisasterLoss":
        village = {"village_code": household.village_code, "household_id": household.household_id,
                   "event_id": event["event_id"], "disaster_date": event["disaster_date"]}
    return HouseholdOutcome(drafts, None if new_history is None else _history_to_table(new_history), village)


def village_stage(
    village_code: str,
    records: list[list[str]],
    fired: list[list[str]],
    cfg: RuleConfig,
) -> RegionalDraft | None:
    parsed = [VillageRecord(hh, eid, dt.date.fromisoformat(day)) for hh, eid, day in records]
    windows = [(dt.date.fromisoformat(a), dt.date.fromisoformat(b)) for a, b in fired]
    return regional_disaster(village_code, parsed, windows, cfg)


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
