"""The stages' computation and the alert records, as plain functions (used by `handlers`).

    address_of       where an event goes: its person, its household (no person named), or its village
    household stage  event + person + household + medical history -> alert drafts, new history, village record,
                     the fact to keep
    fact_of          an event as a fact of its household or village (its fields as text)

What happens to a feed's events is read from its declaration (schemas.catalog.Feed): `link` for the address,
`rules` for the alerts, `facts` for what is kept.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.alerts import Rule
from schemas.catalog import INTAKE, Feed, feed_of_topic
from schemas.errors import DecodeError
from services.monitor.rules import (
    AlertDraft,
    HouseholdContext,
    MedicalStay,
    PersonContext,
    RegionalDraft,
    RuleConfig,
    evaluate,
)
from services.monitor.state import Fact

__all__ = [
    "Address",
    "address_of",
    "needs_record",
    "feed_for",
    "fact_of",
    "HouseholdOutcome",
    "household_stage",
    "household_alert_record",
    "regional_alert_record",
]

_ENVELOPE = frozenset({"event_id", "person_key", "head_person_key", "household_id", "occurred_at", "ingested_at",
                       "source"})


def feed_for(topic: str, schema: str) -> Feed:
    """The monitored feed of `topic`, checked against the record's schema; DecodeError for anything else."""
    feed = feed_of_topic(topic)
    if feed is None:
        raise DecodeError(f"{topic} is not a monitored event topic")
    if schema != feed.schema:
        raise DecodeError(f"{schema} on {topic}, which carries {feed.schema}")
    return feed


@dataclass(frozen=True)
class Address:
    """Where an event is judged: `kind` person (key = person_key), household (key = 户编号) or village (code)."""

    kind: str
    key: str


def needs_record(feed: Feed) -> bool:
    """Whether the address depends on the record (else the message key is the person_key)."""
    return feed.link == "village" or feed.department == INTAKE


def address_of(feed: Feed, record: Mapping[str, Any]) -> Address:
    """A person-linked (or household-head-linked) event goes to its person; an intake report to its head, or to
    the household when only the 户编号 was given; a village-level event to the person it names, else the village."""
    if feed.department == INTAKE:
        if record.get("head_person_key"):
            return Address("person", record["head_person_key"])
        return Address("household", record["household_id"])
    if record.get("person_key"):
        return Address("person", record["person_key"])
    if feed.link == "village":
        return Address("village", record["village_code"])
    raise DecodeError(f"{feed.schema} record without person_key")


def _text(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "、".join(_text(v) for v in value)
    return str(value)


def fact_of(feed: Feed, topic: str, record: Mapping[str, Any]) -> Fact | None:
    """The event as a fact of its household or village, if its feed keeps facts: who, when, its own fields."""
    if not feed.facts:
        return None
    values = {k: _text(v) for k, v in record.items() if k not in _ENVELOPE and v is not None}
    person = record.get("person_key") or record.get("head_person_key")
    return Fact(topic, record["event_id"], person, record["occurred_at"], values)


@dataclass(frozen=True)
class HouseholdOutcome:
    drafts: list[AlertDraft]
    medical_history: list[MedicalStay] | None  # the household's new stays, when the event changed them
    village_record: dict[str, Any] | None  # VillageDisaster record, for the feeds the regional rule judges
    fact: Fact | None  # what the household keeps of the event


def household_stage(
    feed: Feed,
    topic: str,
    event: Mapping[str, Any],
    person: PersonContext | None,
    household: HouseholdContext,
    stays: Sequence[MedicalStay],
    cfg: RuleConfig,
) -> HouseholdOutcome:
    """One event of a known household: its feed's rules, the new medical history, the record for the village
    stage, the fact to keep. `person` is None only for an event addressed to the household alone."""
    drafts: list[AlertDraft] = []
    new_history = None
    if feed.rules:
        if person is None:
            raise DecodeError(f"{feed.schema}: judged by {', '.join(feed.rules)} but names no person")
        drafts, new_history = evaluate(feed.rules, event, person, household, stays, cfg)
    village = None
    if Rule.REGIONAL_DISASTER in feed.rules:
        village = {"village_code": household.village_code, "household_id": household.household_id,
                   "event_id": event["event_id"], "disaster_date": event["occurred_at"]}
    return HouseholdOutcome(drafts, new_history, village, fact_of(feed, topic, event))


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
