"""The stages' computation and the alert records, as plain functions (used by `handlers`).

    address_of       where an event goes: its person, its household (no person named), or its village
    household stage  event + person + household + its history -> the rules' verdict (alerts, medical history,
                     timers), the records for the regional rules, the fact to keep
    fact_of          an event as a fact of its household or village (its fields as text)
    profile_record   the household as the case worker sees it (profiles.household)

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
from schemas.topics import event_topic
from services.monitor.household_rules import judge
from services.monitor.regional_rules import township_of
from services.monitor.rules import (
    AlertDraft,
    Context,
    Fact,
    HouseholdContext,
    MedicalStay,
    PersonContext,
    RegionalDraft,
    RuleConfig,
    Verdict,
    VillageRecord,
    as_fact,
)

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
    "regional_records",
    "cluster_records",
    "profile_record",
    "HOSPITALIZATION_TOPIC",
]

HOSPITALIZATION_TOPIC = event_topic("medical-security", "hospitalization")

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


def fact_of(feed: Feed, topic: str, record: Mapping[str, Any]) -> Fact | None:
    """The event as a fact of its household or village, if its feed keeps facts: who, when, its own fields."""
    return as_fact(topic, record) if feed.facts else None


@dataclass(frozen=True)
class HouseholdOutcome:
    verdict: Verdict  # the alerts, the new medical history, the timers set and cancelled
    village_records: list[VillageRecord]  # what the regional rules count, by region (village or township)
    regions: list[str]  # the region of each record, same order
    fact: Fact | None  # what the household keeps of the event


def household_stage(
    feed: Feed,
    topic: str,
    event: Mapping[str, Any],
    person: PersonContext | None,
    household: HouseholdContext,
    facts: Sequence[Fact],
    stays: Sequence[MedicalStay],
    today: dt.date,
    cfg: RuleConfig,
) -> HouseholdOutcome:
    """One event of a known household: its feed's rules, the records for the regional rules, the fact to keep.
    `person` is None only for an event addressed to the household alone."""
    verdict = judge(feed.rules, event, Context(topic, person, household, facts, stays, today, cfg))
    records, regions = regional_records(feed, event, household, verdict.drafts)
    return HouseholdOutcome(verdict, records, regions, fact_of(feed, topic, event))


def regional_records(feed: Feed, event: Mapping[str, Any], household: HouseholdContext,
                     drafts: Sequence[AlertDraft]) -> tuple[list[VillageRecord], list[str]]:
    """What the regional rules count of a household's event: its disaster, its stay, a member's return home, and
    every HIGH alert it raised (REGIONAL_RISK_CLUSTER counts the monitor's own alerts)."""
    hh, village = household.household_id, household.village_code
    records: list[tuple[str, VillageRecord]] = []
    if Rule.REGIONAL_DISASTER in feed.rules:
        records.append((village, VillageRecord(hh, event["event_id"], event["occurred_at"] if "house_damage" in event
                                               else event["disaster_date"])))
    if Rule.REGIONAL_ILLNESS in feed.rules:
        records.append((village, VillageRecord(hh, event["event_id"], event["admission_date"],
                                               Rule.REGIONAL_ILLNESS.value, None, str(event["disease"]))))
    if Rule.REGIONAL_RETURNS in feed.rules and event.get("end_date") is not None:
        records.append((township_of(village), VillageRecord(hh, event["event_id"], event["end_date"],
                                                            Rule.REGIONAL_RETURNS.value, event["person_key"])))
    clusters, regions = cluster_records(household, drafts)
    return [r for _, r in records] + clusters, [region for region, _ in records] + regions


def cluster_records(household: HouseholdContext, drafts: Sequence[AlertDraft]) -> tuple[list[VillageRecord],
                                                                                        list[str]]:
    """A REGIONAL_RISK_CLUSTER record (keyed by the alert id, dated by the alert) for each HIGH alert raised."""
    high = [d for d in drafts if d.severity == "HIGH"]
    return ([VillageRecord(household.household_id, d.alert_id, d.occurred_at, Rule.REGIONAL_RISK_CLUSTER.value)
             for d in high], [household.village_code] * len(high))


def household_alert_record(draft: AlertDraft, raised_at: dt.datetime,
                           topics: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The HouseholdAlert record; `topics` gives each event's topic (which department reported it)."""
    known = topics or {}
    return {
        "alert_id": draft.alert_id, "household_id": draft.household_id, "village_code": draft.village_code,
        "rule": draft.rule.value, "severity": draft.severity.value, "reason": draft.reason,
        "event_ids": list(draft.event_ids), "occurred_at": draft.occurred_at, "raised_at": raised_at,
        "event_topics": [known.get(e, "") for e in draft.event_ids],
    }


def regional_alert_record(draft: RegionalDraft, raised_at: dt.datetime) -> dict[str, Any]:
    return {
        "alert_id": draft.alert_id, "region_code": draft.village_code, "rule": draft.rule.value,
        "severity": draft.severity.value, "reason": draft.reason, "household_ids": list(draft.household_ids),
        "event_ids": list(draft.event_ids), "window_start": draft.window_start, "window_end": draft.window_end,
        "occurred_at": draft.window_start, "raised_at": raised_at,
    }


def _latest_by_domain(facts: Sequence[Fact], stays: Sequence[MedicalStay]) -> list[tuple[str, Fact]]:
    latest: dict[str, Fact] = {}
    for f in [*facts, *(Fact(HOSPITALIZATION_TOPIC, s.event_id, None, s.admission_date,
                             {"admission_date": s.admission_date.isoformat(),
                              "out_of_pocket": str(s.out_of_pocket)}) for s in stays)]:
        feed = feed_of_topic(f.topic)
        if feed is None or not feed.domain:
            continue
        held = latest.get(feed.domain)
        if held is None or (f.day, f.event_id) >= (held.day, held.event_id):
            latest[feed.domain] = f
    return sorted(latest.items())


def profile_record(household: HouseholdContext, facts: Sequence[Fact], stays: Sequence[MedicalStay],
                   updated_at: dt.datetime) -> dict[str, Any]:
    """The HouseholdProfile record: the latest fact per domain and the latest income (by 年度)."""
    items = []
    for domain, f in _latest_by_domain(facts, stays):
        feed = feed_of_topic(f.topic)
        assert feed is not None
        items.append({"domain": domain, "topic": f.topic, "department": feed.department, "feed": feed.title,
                      "event_id": f.event_id, "person_key": f.person_key, "day": f.day, "values": dict(f.values)})
    incomes = [f for f in facts if f.topic == event_topic("statistics", "household-income") and f.get("year")]
    latest = max(incomes, key=lambda f: (int(f.get("year") or 0), f.day, f.event_id), default=None)
    return {"household_id": household.household_id, "village_code": household.village_code, "facts": items,
            "income_year": int(latest.get("year") or 0) if latest else None,
            "income_per_capita": latest.amount("per_capita_net_income") if latest else None,
            "updated_at": updated_at}
