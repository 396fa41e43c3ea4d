"""The roster as a full snapshot: what a load must send so that the registry topics say what the file says.

Pure: no Kafka, no files. The inputs are what the compacted topics hold now (key -> record, tombstones already
applied) and what the file wants (key -> record + its encoded message); the output is a `RosterPlan`, the diff
per topic and the messages to send, in order.

    content_of(record)        the record without provenance (`ingested_at`, `source`): what is compared
    decode_state(raw, ...)    topic contents (key -> bytes) -> key -> content, with the codec
    diff(current, wanted)     added / changed / unchanged / removed (+ kept) keys of one topic
    plan_roster(...)          both topics' diffs and the messages, in the order that keeps the topics consistent

Rules of the snapshot (docs/departments.md, "The bureau's roster"):
- a key in the file and not on the topic is *added*; on both with other content *changed*; with the same
  content *unchanged* (not re-sent). Provenance differs on every load and never makes a record changed;
- a key on the topic and not in the file is *removed* (a tombstone: key, null value) ...
- ... except with `delta=True` (upsert only: it is *kept, not in the file*), and except a person whose row was
  rejected although its ID number is valid: it is *kept, row rejected* as it is on the topic, and so is the
  household it belongs to there (a bad row never removes anyone; bureau.load_snapshot also lets a household
  whose 户主 row was rejected keep that head);
- order: household upserts, person upserts (both in file order), person tombstones, household tombstones, each
  step acknowledged before the next. A person is never on the topic before its household, and a household never
  disappears while a person still names it. An interrupted load leaves a state the next load diffs against: a
  re-run converges to the file.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.codec import Codec
from schemas.errors import DecodeError
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS

__all__ = [
    "PROVENANCE",
    "PERSON_SCHEMA",
    "HOUSEHOLD_SCHEMA",
    "UNDECODABLE",
    "content_of",
    "decode_state",
    "Diff",
    "diff",
    "Wanted",
    "Send",
    "RosterPlan",
    "plan_roster",
]

PROVENANCE = frozenset({"ingested_at", "source"})
PERSON_SCHEMA = "povwatch.registry.Person"
HOUSEHOLD_SCHEMA = "povwatch.registry.Household"
UNDECODABLE = "__undecodable__"  # the content of a value that cannot be decoded: never equal to a record's

Content = Mapping[str, Any]


def content_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The semantic content of a registry record: everything but provenance."""
    return {k: v for k, v in record.items() if k not in PROVENANCE}


def decode_state(raw: Mapping[bytes, bytes], codec: Codec, schema: str) -> dict[bytes, dict[str, Any]]:
    """Topic contents -> key -> content. A value that does not decode as `schema` gets a content that equals
    nothing, so a key in the file is re-sent and a key not in the file is removed."""
    out: dict[bytes, dict[str, Any]] = {}
    for key, value in raw.items():
        try:
            out[key] = content_of(codec.decode(value, expect=schema).record)
        except DecodeError as exc:
            out[key] = {UNDECODABLE: str(exc)}
    return out


@dataclass(frozen=True)
class Diff:
    """One topic's keys, by fate. `added`, `changed`, `unchanged` in file order; the others sorted."""

    added: tuple[bytes, ...] = ()
    changed: tuple[bytes, ...] = ()
    unchanged: tuple[bytes, ...] = ()
    removed: tuple[bytes, ...] = ()
    kept_row_rejected: tuple[bytes, ...] = ()
    kept_not_in_file: tuple[bytes, ...] = ()  # only with delta

    @property
    def upserts(self) -> tuple[bytes, ...]:
        return self.added + self.changed

    def counts(self) -> dict[str, int]:
        return {"added": len(self.added), "changed": len(self.changed), "removed": len(self.removed),
                "unchanged": len(self.unchanged), "kept_row_rejected": len(self.kept_row_rejected),
                "kept_not_in_file": len(self.kept_not_in_file)}


def diff(current: Mapping[bytes, Content], wanted: Mapping[bytes, Content], *, delta: bool = False,
         keep: Collection[bytes] = ()) -> Diff:
    """Compare the file's records (`wanted`) with the topic's (`current`), both key -> content.

    Keys on the topic and not in the file are removed, unless `delta` (all kept) or listed in `keep`."""
    added = tuple(k for k in wanted if k not in current)
    changed = tuple(k for k in wanted if k in current and current[k] != wanted[k])
    unchanged = tuple(k for k in wanted if k in current and current[k] == wanted[k])
    gone = sorted(k for k in current if k not in wanted)
    if delta:
        return Diff(added, changed, unchanged, kept_not_in_file=tuple(gone))
    keep = set(keep)
    return Diff(added, changed, unchanged, removed=tuple(k for k in gone if k not in keep),
                kept_row_rejected=tuple(k for k in gone if k in keep))


@dataclass(frozen=True)
class Wanted:
    """What the file says about one key: the content compared, and the encoded message published if needed."""

    content: Content
    value: bytes


@dataclass(frozen=True)
class Send:
    topic: str
    key: bytes
    value: bytes | None  # None: a tombstone


@dataclass(frozen=True)
class RosterPlan:
    persons: Diff
    households: Diff
    steps: tuple[tuple[Send, ...], ...]  # sent in this order; each step acknowledged before the next

    @property
    def messages(self) -> list[Send]:
        return [send for step in self.steps for send in step]

    @property
    def tombstones(self) -> int:
        return len(self.persons.removed) + len(self.households.removed)


def _household_key(person: Content) -> bytes | None:
    household = person.get("household_id")
    return household.encode("utf-8") if isinstance(household, str) else None


def plan_roster(
    current_persons: Mapping[bytes, Content],
    current_households: Mapping[bytes, Content],
    wanted_persons: Mapping[bytes, Wanted],
    wanted_households: Mapping[bytes, Wanted],
    *,
    delta: bool = False,
    rejected_person_keys: Collection[bytes] = (),
) -> RosterPlan:
    """Both diffs and the messages that turn the topics' state into the file's (see the module docstring)."""
    persons = diff(current_persons, {k: w.content for k, w in wanted_persons.items()}, delta=delta,
                   keep=rejected_person_keys)
    households_kept = {h for k in persons.kept_row_rejected if (h := _household_key(current_persons[k]))}
    households = diff(current_households, {k: w.content for k, w in wanted_households.items()}, delta=delta,
                      keep=households_kept)
    household_upserts, person_upserts = set(households.upserts), set(persons.upserts)
    steps = (
        tuple(Send(REGISTRY_HOUSEHOLDS, k, w.value) for k, w in wanted_households.items() if k in household_upserts),
        tuple(Send(REGISTRY_PERSONS, k, w.value) for k, w in wanted_persons.items() if k in person_upserts),
        tuple(Send(REGISTRY_PERSONS, k, None) for k in persons.removed),
        tuple(Send(REGISTRY_HOUSEHOLDS, k, None) for k in households.removed),
    )
    return RosterPlan(persons, households, tuple(step for step in steps if step))
