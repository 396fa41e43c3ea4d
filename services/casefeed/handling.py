"""What the casefeed does with one batch of alert messages, apart from Kafka: decode, record, isolate the bad ones.

    handle_batch(store, messages, codec, now) -> BatchOutcome

Every message ends in exactly one of three ways:
  * stored (new evidence) or recognised as already stored (a duplicate) - `BatchOutcome.results`;
  * dead-lettered: it cannot be decoded, or the case DB refuses it with a data error (value too long, a
    constraint, a record missing a field) - `BatchOutcome.letters`, one `DeadLetter` each, with the reason.
The batch is first recorded in one transaction; only when the DB refuses it is each alert recorded alone, so one
bad alert never holds the others back. `DatabaseUnavailable` (an outage) is not handled here: it propagates with
nothing decided, and the caller retries the whole batch later (recording is idempotent by alert_id).
`Backoff` is the retry schedule for that.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from plumbing.backoff import Backoff
from schemas.codec import Codec
from schemas.deadletter import DeadLetter, message_dead_letter
from schemas.errors import DecodeError, SchemaError
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
from services.casedb.store import RecordResult

__all__ = ["STAGE", "EXPECTED", "Incoming", "Refusal", "BatchOutcome", "Store", "record_isolated",
           "handle_batch", "Backoff"]  # Backoff: plumbing.backoff, re-exported

STAGE = "casefeed"
EXPECTED = {ALERTS_HOUSEHOLD: "povwatch.alerts.HouseholdAlert", ALERTS_REGIONAL: "povwatch.alerts.RegionalAlert"}
# an alert's fields that identify it in a dead letter (no names or ID numbers travel in alerts)
_IDENTIFYING = ("alert_id", "household_id", "region_code", "village_code", "rule", "severity")


class Store(Protocol):
    def record_batch(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[RecordResult]: ...


@dataclass(frozen=True)
class Incoming:
    """One consumed message, as the consumer gave it."""

    topic: str
    partition: int
    offset: int
    value: bytes


@dataclass(frozen=True)
class Refusal:
    reason: str


@dataclass
class BatchOutcome:
    results: list[RecordResult] = field(default_factory=list)   # stored or duplicate, in message order
    letters: list[DeadLetter] = field(default_factory=list)     # undecodable or refused, in message order
    undecodable: int = 0
    refused: int = 0


def record_isolated(store: Store, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[RecordResult | Refusal]:
    """Record (topic, alert) pairs: all in one transaction, or - when the DB refuses that - each alone, so the
    refused ones are told apart. DatabaseUnavailable (and other environment errors) propagate."""
    if not items:
        return []
    try:
        return list(store.record_batch(items))
    except SchemaError:
        pass  # one of them (at least) is refused: find which, storing the others
    outcomes: list[RecordResult | Refusal] = []
    for item in items:
        try:
            [result] = store.record_batch([item])
            outcomes.append(result)
        except SchemaError as exc:  # RecordRefused (the DB said no) or a record missing a field
            outcomes.append(Refusal(str(exc)))
    return outcomes


def _identifying(alert: Mapping[str, Any]) -> dict[str, str]:
    return {name: str(alert[name]) for name in _IDENTIFYING if alert.get(name) is not None}


def handle_batch(store: Store, messages: Sequence[Incoming], codec: Codec, now: dt.datetime) -> BatchOutcome:
    """Decode, record and sort out one batch (see the module doc). Blocking: it talks to the case DB."""
    outcome = BatchOutcome()
    decoded: list[tuple[Incoming, dict[str, Any]]] = []
    for message in messages:
        try:
            expected = EXPECTED.get(message.topic)
            if expected is None:
                raise DecodeError(f"the casefeed does not read topic {message.topic}")
            decoded.append((message, codec.decode(message.value, expected).record))
        except DecodeError as exc:
            outcome.undecodable += 1
            outcome.letters.append(message_dead_letter(message.topic, message.partition, message.offset,
                                                       [f"undecodable: {exc}"], STAGE, now))
    recorded = record_isolated(store, [(message.topic, alert) for message, alert in decoded])
    for (message, alert), result in zip(decoded, recorded):
        if isinstance(result, Refusal):
            outcome.refused += 1
            outcome.letters.append(message_dead_letter(message.topic, message.partition, message.offset,
                                                       [result.reason], STAGE, now, fields=_identifying(alert)))
        else:
            outcome.results.append(result)
    return outcome
