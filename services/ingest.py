"""Composition root of the connectors: settings -> pseudonymiser, codec, publisher -> run one file, or a
department's several files through one producer (`run_connector_files`)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from connectors.catalog import ROSTER, get_feed
from connectors.departments.bureau import RosterSummary, load_snapshot
from connectors.framework import EventHandler, Summary, bind_source, run_file, run_rows
from connectors.pseudonym import pseudonymiser_of
from connectors.sources import file_source
from plumbing.audit import party_of, record_once
from plumbing.clock import Clock, utc_now
from plumbing.kafka_io import KafkaPublisher, read_compacted
from plumbing.settings import Settings
from schemas.codec import default_codec
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS

__all__ = ["run_connector", "run_connector_files", "load_roster", "audit_run"]


def _audit_fields(settings: Settings, summary: Summary) -> dict[str, Any]:
    return {"counts": {"read": summary.read, "published": summary.published, "rejected": summary.rejected,
                       "duplicates": summary.duplicates},
            "details": {"department": summary.department, "feed": summary.feed, "origin": summary.file,
                        "key_id": pseudonymiser_of(settings).key_id}}


async def audit_run(settings: Settings, summary: Summary, kind: str = "connector.run") -> None:
    """The run's record on the audit trail (party: the department's connector): what was read and sent."""
    await record_once(settings, f"connector.{summary.department}", kind, **_audit_fields(settings, summary))


async def run_connector(
    settings: Settings, department: str, feed: str, path: Path, *, clock: Clock = utc_now,
    wrap_publisher: Callable[[KafkaPublisher], Any] | None = None,
) -> Summary:
    """`povwatch connector run`: one file through the feed's handler to Kafka. `wrap_publisher` wraps the
    publisher the connector sends through (bench/latency.py paces its sends with it)."""
    spec = get_feed(department, feed)
    wrap = wrap_publisher or (lambda publisher: publisher)
    codec = default_codec()
    handler = EventHandler(spec, pseudonymiser=pseudonymiser_of(settings), codec=codec, clock=clock)
    summary = await run_file(
        spec, path, handler, codec=codec, clock=clock, zone=settings.zone, progress=None,
        publisher_factory=lambda: wrap(KafkaPublisher(settings.bootstrap, client_id=f"povwatch-{department}",
                                                      require_topics=[spec.topic, spec.dlq])),
    )
    await audit_run(settings, summary)
    return summary


async def run_connector_files(
    settings: Settings, department: str, files: Sequence[tuple[str, Path]], *, clock: Clock = utc_now,
) -> list[Summary]:
    """`povwatch connector run` with several files: a department's files (feed, path), in the order given, through
    one producer with bulk batching (plumbing.kafka_io.BULK_OPTIONS) and one audit chain, one record per file.
    Each file is read and counted as if run alone (its own duplicate detection, its own summary). Every file's
    header is checked before the broker is contacted, so a wrong file fails the run before anything is sent."""
    specs = [get_feed(department, feed) for feed, _ in files]
    for spec, (_, path) in zip(specs, files, strict=True):
        source = file_source(path)
        try:
            bind_source(spec, source)  # InputFileError naming the file when its header does not fit the feed
        finally:
            source.close()
    codec = default_codec()
    pseudonymiser = pseudonymiser_of(settings)
    topics = sorted({t for spec in specs for t in (spec.topic, spec.dlq)})
    summaries: list[Summary] = []
    async with KafkaPublisher(settings.bootstrap, client_id=f"povwatch-{department}", require_topics=topics,
                              bulk=True) as publisher:
        for spec, (_, path) in zip(specs, files, strict=True):
            handler = EventHandler(spec, pseudonymiser=pseudonymiser, codec=codec, clock=clock)
            summaries.append(await run_rows(spec, file_source(path), handler, publisher, codec=codec, clock=clock,
                                            zone=settings.zone))
    async with party_of(settings, f"connector.{department}").trail(settings.bootstrap) as trail:
        for summary in summaries:
            await trail.record("connector.run", **_audit_fields(settings, summary))
    return summaries


async def load_roster(settings: Settings, path: Path, *, delta: bool = False,
                      clock: Clock = utc_now) -> RosterSummary:
    """The roster file as the full snapshot of the registry topics (`delta`: upsert only); see
    connectors.departments.bureau.load_snapshot."""

    async def read_state(topic: str) -> dict[bytes, bytes]:
        return await read_compacted(settings.bootstrap, topic)

    summary = await load_snapshot(
        path, pseudonymiser=pseudonymiser_of(settings), codec=default_codec(), clock=clock,
        read_state=read_state, delta=delta, zone=settings.zone,
        publisher_factory=lambda: KafkaPublisher(
            settings.bootstrap, client_id="povwatch-roster",
            require_topics=[REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS, ROSTER.dlq]),
    )
    await audit_run(settings, summary, "roster.load")
    return summary

