"""The case feed's second consumer: cadre-visit reports (`events.intake.cadre-visit`) close screening tasks (集中排查).

`povwatch casefeed` runs it beside the alert consumer, in its own consumer group `<POVWATCH_CASEFEED_GROUP>.screening`
(so the alerts' offsets and these never hold each other back). Each report (povwatch.events.IntakeReport, decoded
with schemas.codec.default_codec) names its household by `household_id` or by `head_person_key` (the case DB's
households.head_person_key); it closes the household's OPEN tasks of the quarter and the year its `reported_on` day
lies in (services/cases/screening.py decide_visit): closed_by "cadre-visit", closing_event_id the report's event id.

At least once, idempotent: a batch is written in one transaction, and only then are its offsets committed; a
report delivered again finds its own event id on the tasks it closed (a duplicate) and changes nothing. A case DB
outage holds the batch (nothing committed) and retries it with backoff, polling with the partitions paused so the
consumer stays in its group. A message that is not an IntakeReport of the cadre-visit channel is logged and
skipped; a report the case DB refuses with a data error is logged and skipped (counted either way): it would be
refused again on every retry.

    povwatch_screening_visits_total{outcome}   cadre-visit reports consumed, by what they did: closed, duplicate,
                                               already_closed, no_open_task (a known household without a task for
                                               that day: outside every period opened for it), unknown_household,
                                               undecodable, refused
    povwatch_screening_tasks_closed_total      screening tasks closed by cadre-visit reports
    povwatch_consumer_lag{group=<group>.screening, topic=events.intake.cadre-visit, partition}
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import Counter

from plumbing.backoff import Backoff
from schemas.catalog import INTAKE, INTAKE_SCHEMA
from schemas.codec import Codec
from schemas.deadletter import DeadLetter
from schemas.errors import DecodeError, SchemaError
from schemas.topics import event_topic
from services.casefeed.side_consumer import Message, SideConsumer, SideSpec
from services.cases.screening import VisitDecision, VisitOutcome
from services.cases.screening_store import Screening, VisitReport

__all__ = ["CADRE_VISIT_TOPIC", "screening_group", "VisitBatch", "handle_visits", "ScreeningFeed", "VISITS",
           "TASKS_CLOSED"]

log = logging.getLogger("povwatch.casefeed.screening")

CADRE_VISIT_TOPIC = event_topic(INTAKE, "cadre-visit")
VISITS = Counter("povwatch_screening_visits_total",
                 "Cadre-visit reports consumed by the case feed's screening consumer, by what they did", ["outcome"])
TASKS_CLOSED = Counter("povwatch_screening_tasks_closed_total", "Screening tasks closed by cadre-visit reports")
REFUSED = "refused"  # a report the case DB refused with a data error (an outcome label beside VisitOutcome's)


def screening_group(casefeed_group: str) -> str:
    return f"{casefeed_group}.screening"


@dataclass
class VisitBatch:
    """What one batch did: an outcome per message, in order, and the tasks closed."""

    outcomes: list[str] = field(default_factory=list)
    tasks_closed: int = 0

    @property
    def letters(self) -> Sequence[DeadLetter]:
        """None: a report the feed cannot use is logged and skipped, never dead-lettered."""
        return ()


def _decode(codec: Codec, value: bytes) -> VisitReport:
    record = codec.decode(value, INTAKE_SCHEMA).record
    try:
        return VisitReport.of(record)
    except (KeyError, ValueError) as exc:
        raise DecodeError(f"not a cadre-visit report: {exc}") from None


def handle_visits(screening: Screening, values: Sequence[bytes], codec: Codec,
                  where: Sequence[str] = ()) -> VisitBatch:
    """Decode and record one batch (no Kafka here; blocking: it writes the case DB). DatabaseUnavailable
    propagates with nothing written; a batch the DB refuses is recorded report by report, the refused skipped."""
    batch = VisitBatch()
    reports: list[tuple[int, VisitReport]] = []
    outcomes: list[str] = [""] * len(values)
    for i, value in enumerate(values):
        try:
            reports.append((i, _decode(codec, value)))
        except DecodeError as exc:
            outcomes[i] = VisitOutcome.UNDECODABLE.value
            log.warning("skipped %s: %s", where[i] if i < len(where) else f"message {i}", exc)
    decisions: list[VisitDecision | None]
    try:
        decisions = list(screening.record_visits([r for _, r in reports]))
    except SchemaError:  # RecordRefused: find the report(s) the DB refuses, recording the others
        decisions = []
        for i, report in reports:
            try:
                decisions.extend(screening.record_visits([report]))
            except SchemaError as exc:
                decisions.append(None)
                log.warning("skipped cadre-visit report %s (%s): %s", report.event_id,
                            where[i] if i < len(where) else i, exc)
    for (i, _), decision in zip(reports, decisions):
        outcomes[i] = REFUSED if decision is None else decision.outcome.value
        if decision is not None and decision.outcome == VisitOutcome.CLOSED:
            batch.tasks_closed += len(decision.close)
    batch.outcomes = outcomes
    return batch


def _handle(screening: Screening, messages: Sequence[Message], codec: Codec, now: dt.datetime) -> VisitBatch:
    return handle_visits(screening, [m.value or b"" for m in messages], codec, [m.where for m in messages])


_SPEC: SideSpec[Screening, Message, VisitBatch] = SideSpec(
    topics=(CADRE_VISIT_TOPIC,), task_name="screening-feed", message=Message, handler=_handle, counter=VISITS,
    outcomes=(*(o.value for o in VisitOutcome), REFUSED), log=log, label="screening", unit="cadre-visit report(s)",
    redelivered="reports")


class ScreeningFeed(SideConsumer[Screening, Message, VisitBatch]):
    """The cadre-visit consumer as an asyncio task beside the alert consumer (see the module docstring; the loop,
    the outage backoff and the commit are services/casefeed/side_consumer.py's)."""

    closed = 0  # screening tasks closed

    @classmethod
    async def start(cls, bootstrap: str, casefeed_group: str, screening: Screening, codec: Codec,
                    backoff: Backoff) -> ScreeningFeed:
        return await cls.launch(_SPEC, bootstrap, screening_group(casefeed_group), screening, codec, backoff)

    def _tally(self, done: VisitBatch) -> None:
        TASKS_CLOSED.inc(done.tasks_closed)
        self.closed += done.tasks_closed

    def _summary(self) -> None:
        log.info("screening: %d cadre-visit report(s) consumed, %d task(s) closed", self.consumed, self.closed)
