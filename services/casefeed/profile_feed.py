"""The case feed's profile consumer: profiles.household (the monitor's povwatch.profiles.HouseholdProfile records,
compacted, key = household_id) -> the case DB's `household_profiles` table (services/cases/profiles.py).

`povwatch casefeed` runs it beside the alert consumer, in its own consumer group `<POVWATCH_CASEFEED_GROUP>.profiles`
(so neither holds the other's offsets back). At least once, idempotent: a batch is written in ONE transaction, and
only then are its offsets committed; a profile replaces the stored one only if its updated_at is not older, so a
redelivered or reordered profile never puts an older picture back (a `stale` outcome), and the same profile again
is a `duplicate`. A tombstone (null value) deletes the household's profile.

A message that cannot be decoded as a HouseholdProfile, or a profile that is not well formed or that the case DB
refuses with a data error, is dead-lettered to `dlq.casefeed` with the reason (stage "casefeed", its topic,
partition and offset; the household id and village code when known: no name or ID number travels here), counted,
and its offset committed with the batch: it never stops the feed. A case DB outage holds the batch (nothing
committed) and retries it with backoff, polling with the partitions paused so the consumer stays in its group.

    povwatch_casefeed_profiles_total{outcome}   profile messages consumed, by what they did: stored, replaced,
                                                duplicate, stale, deleted, absent (a tombstone for no stored
                                                profile), dead_letter
    povwatch_consumer_lag{group=<group>.profiles, topic=profiles.household, partition}
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from plumbing.backoff import Backoff
from plumbing.clock import Clock
from schemas.codec import Codec
from schemas.deadletter import DeadLetter, message_dead_letter
from schemas.errors import SchemaError
from schemas.topics import CASEFEED_DLQ, PROFILES_HOUSEHOLD
from services.casedb.store import CaseStore
from services.casefeed.side_consumer import Message, SideConsumer, SideSpec
from services.cases.profiles import OUTCOMES, profile_row, record_profiles

__all__ = ["PROFILE_SCHEMA", "STAGE", "DEAD_LETTER", "profiles_group", "ProfileMessage", "ProfileBatch",
           "handle_profiles", "ProfileFeed", "PROFILES"]

log = logging.getLogger("povwatch.casefeed.profiles")

PROFILE_SCHEMA = "povwatch.profiles.HouseholdProfile"
STAGE = "casefeed"
DEAD_LETTER = "dead_letter"
PROFILES = Counter("povwatch_casefeed_profiles_total",
                   "profiles.household messages consumed by the case feed, by what they did", ["outcome"])
_IDENTIFYING = ("household_id", "village_code")


def profiles_group(casefeed_group: str) -> str:
    return f"{casefeed_group}.profiles"


class ProfileMessage(Message):
    """One consumed message of profiles.household (value None: a tombstone)."""


@dataclass
class ProfileBatch:
    """What one batch did: an outcome per message, in order (services.cases.profiles.OUTCOMES or DEAD_LETTER),
    and the dead letters to send."""

    outcomes: list[str] = field(default_factory=list)
    letters: list[DeadLetter] = field(default_factory=list)


def _identifying(record: Any) -> dict[str, str]:
    if not isinstance(record, Mapping):
        return {}
    return {name: str(record[name])[:64] for name in _IDENTIFYING if isinstance(record.get(name), str)}


def handle_profiles(store: CaseStore, messages: Sequence[ProfileMessage], codec: Codec,
                    now: dt.datetime) -> ProfileBatch:
    """Decode, store and sort out one batch (no Kafka here; blocking: it writes the case DB). The batch is stored in
    one transaction; only when the DB refuses it is each profile stored alone, so one bad profile never holds the
    others back. DatabaseUnavailable propagates with nothing stored (the caller retries the whole batch)."""
    batch = ProfileBatch(outcomes=[""] * len(messages))
    items: list[tuple[int, str, Mapping[str, Any] | None]] = []

    def dead(i: int, reason: str, record: Any = None) -> None:
        message = messages[i]
        batch.outcomes[i] = DEAD_LETTER
        batch.letters.append(message_dead_letter(message.topic, message.partition, message.offset, [reason], STAGE,
                                                 now, fields=_identifying(record)))
        log.warning("dead-lettered %s to %s: %s", message.where, CASEFEED_DLQ, reason)

    for i, message in enumerate(messages):
        if message.value is None:
            key = (message.key or b"").decode("utf-8", errors="replace").strip()
            if not key:
                dead(i, "a tombstone without a key: no household to delete")
            else:
                items.append((i, key, None))
            continue
        try:
            record = codec.decode(message.value, PROFILE_SCHEMA).record
        except SchemaError as exc:  # DecodeError: not a single-object message of the expected schema
            dead(i, f"undecodable: {exc}")
            continue
        try:
            profile_row(record)
        except SchemaError as exc:
            dead(i, f"not a household profile: {exc}", record)
            continue
        items.append((i, str(record["household_id"]), record))
    try:
        outcomes = record_profiles(store, [(key, item) for _, key, item in items])
        for (i, _, _), outcome in zip(items, outcomes):
            batch.outcomes[i] = outcome
    except SchemaError:  # RecordRefused: find the profile(s) the DB refuses, storing the others
        for i, key, item in items:
            try:
                [batch.outcomes[i]] = record_profiles(store, [(key, item)])
            except SchemaError as exc:
                dead(i, f"refused by the case database: {exc}", item)
    return batch


class ProfileFeed(SideConsumer[CaseStore, ProfileMessage, ProfileBatch]):
    """The profile consumer as an asyncio task beside the alert consumer (see the module docstring; the loop, the
    outage backoff, the dead letters and the commit are services/casefeed/side_consumer.py's)."""

    stored = 0  # stored or replaced

    @classmethod
    async def start(cls, bootstrap: str, casefeed_group: str, store: CaseStore, codec: Codec, backoff: Backoff,
                    clock: Clock) -> ProfileFeed:
        return await cls.launch(_SPEC, bootstrap, profiles_group(casefeed_group), store, codec, backoff, clock)

    def _tally(self, done: ProfileBatch) -> None:
        self.stored += sum(o in ("stored", "replaced") for o in done.outcomes)

    def _summary(self) -> None:
        log.info("profiles: %d message(s) consumed, %d profile(s) stored, %d dead letter(s)", self.consumed,
                 self.stored, self.dead_letters)


_SPEC: SideSpec[CaseStore, ProfileMessage, ProfileBatch] = SideSpec(
    topics=(PROFILES_HOUSEHOLD,), task_name="profile-feed", message=ProfileMessage, handler=handle_profiles,
    counter=PROFILES, outcomes=(*OUTCOMES, DEAD_LETTER), log=log, label="profile", unit="profile(s)",
    redelivered="profiles", client_id="povwatch-casefeed-profiles")
