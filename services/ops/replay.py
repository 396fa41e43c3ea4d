"""Replaying topics into a stopped service, and rebuilding the monitor's state from its sources.

`povwatch replay SERVICE --since WHEN | --from-beginning [--topic T ...] [--dry-run]` moves the committed offsets of
the service's consumer group back to the first message at or after WHEN (or to the log start) on its input
topics; when the service starts again it reads those messages again. Every step downstream is idempotent, so a
replay adds nothing twice: the case feed records a known alert id as a redelivery, the monitor's household stage
drops an event id it has already judged (`povwatch_events_duplicate_total`).

`povwatch rebuild monitor [--dry-run]` is the recovery for a lost or corrupted state changelog: it deletes the
monitor's own topics (the three state changelogs, the two re-keying topics and the unmatched list), creates them
empty, and moves its three groups to the log start, so the next start judges every event still on the event
topics afresh, with fresh state. Alerts come out again under the same ids (the case DB keeps one of each).

Both refuse to touch a group with members (the service must be stopped: a running consumer would overwrite the
offsets at its next commit).

    SERVICES                         service -> its groups and input topics (from the settings)
    parse_since(text, zone)          "2026-12-03", "2026-12-03T02:00", with or without an offset (pure)
    plan(...) -> list[Move]          the new offset of each partition (pure)
    render_moves(moves)              the table both commands print (pure)
    replay(settings, service, ...)   the moves done (or only planned: dry_run)
    rebuild_monitor(settings, ...)   the monitor's topics recreated and its groups at the log start
"""
from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from plumbing.kafka_io import AdminClient, describe_group, ensure_topics, group_offsets
from plumbing.kafka_security import client_options
from plumbing.settings import Settings
from plumbing.table import render_table
from schemas.errors import BrokerUnavailable, ConfigError, PovwatchError
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL, PROFILES_HOUSEHOLD

__all__ = ["Move", "Target", "targets", "parse_since", "plan", "render_moves", "replay", "rebuild_monitor",
           "ServiceRunning", "SERVICE_NAMES"]

_TIMEOUT_MS = 15_000
SERVICE_NAMES = ("monitor", "casefeed", "casefeed-profiles")


class ServiceRunning(PovwatchError):
    """A group to move has members: the service is still running."""


@dataclass(frozen=True)
class Target:
    group: str
    topics: tuple[str, ...]


@dataclass(frozen=True)
class Move:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group had not committed this partition
    new: int
    end: int

    @property
    def to_read(self) -> int:
        return max(0, self.end - self.new)


def targets(settings: Settings, service: str) -> Target:
    """The consumer group `replay SERVICE` moves and the topics it reads."""
    from schemas.catalog import monitored_feeds
    from services.casefeed.profile_feed import profiles_group
    from services.monitor.topics import MonitorTopics

    if service == "monitor":  # the person stage reads every event topic; the later stages follow from it
        return Target(MonitorTopics(settings.monitor_app_id).person_group,
                      tuple(f.topic for f in monitored_feeds()))
    if service == "casefeed":
        return Target(settings.casefeed_group, (ALERTS_HOUSEHOLD, ALERTS_REGIONAL))
    if service == "casefeed-profiles":
        return Target(profiles_group(settings.casefeed_group), (PROFILES_HOUSEHOLD,))
    raise ConfigError(f"unknown service {service!r}; replay knows {', '.join(SERVICE_NAMES)}")


def parse_since(text: str, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """An ISO date or date-time; without an offset it is the prefecture's local time (POVWATCH_TIMEZONE)."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since: not a date or date-time: {text!r} (e.g. 2026-12-03 or 2026-12-03T02:00)") \
            from None
    return when.replace(tzinfo=zone) if when.tzinfo is None else when


def plan(group: str, partitions: Iterable[tuple[str, int]], committed: Mapping[tuple[str, int], int],
         starts: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int],
         at_time: Mapping[tuple[str, int], int | None] | None) -> list[Move]:
    """Where each partition goes: the first offset at or after the time (none after it: the end), or the log
    start when `at_time` is None (from the beginning)."""
    moves = []
    for key in sorted(partitions):
        if at_time is None:
            new = starts[key]
        else:
            found = at_time.get(key)
            new = ends[key] if found is None else max(found, starts[key])
        moves.append(Move(group, key[0], key[1], committed.get(key), new, ends[key]))
    return moves


def render_moves(moves: list[Move]) -> str:
    body = [[m.group, m.topic, str(m.partition), "-" if m.committed is None else str(m.committed), str(m.new),
             str(m.to_read)] for m in moves]
    total = sum(m.to_read for m in moves)
    return render_table(["group", "topic", "partition", "committed", "new offset", "to read"], body, right_from=2) \
        + f"\n{len(moves)} partitions, {total} messages to read again"


async def _require_stopped(bootstrap: str, group: str, service: str) -> None:
    state, members = await describe_group(bootstrap, group)
    if members:
        raise ServiceRunning(f"group {group} has {members} member(s) ({state}): stop every {service} process first "
                             f"(systemctl stop povwatch-{service.split('-')[0]}), then run this again")


async def _consumer(bootstrap: str, group: str | None = None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_options(), group_id=group,
                                enable_auto_commit=False, request_timeout_ms=_TIMEOUT_MS)
    try:
        await consumer.start()
    except (KafkaError, OSError) as exc:
        await consumer.stop()
        raise BrokerUnavailable(f"Kafka broker unreachable at {bootstrap}: {exc}") from None
    return consumer


async def _partitions(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    await consumer._client.force_metadata_update()  # so partitions_for_topic() answers (no public call)
    return [TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())]


async def _moves(bootstrap: str, target: Target, since: dt.datetime | None) -> list[Move]:
    committed = await group_offsets(bootstrap, target.group)
    consumer = await _consumer(bootstrap)
    try:
        tps = await _partitions(consumer, target.topics)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        at_time: dict[tuple[str, int], int | None] | None = None
        if since is not None:
            found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
            at_time = {(tp.topic, tp.partition): (None if hit is None else hit.offset) for tp, hit in found.items()}
    finally:
        await consumer.stop()
    key = {(tp.topic, tp.partition): tp for tp in tps}
    return plan(target.group, key, committed, {(t.topic, t.partition): o for t, o in starts.items()},
                {(t.topic, t.partition): o for t, o in ends.items()}, at_time)


async def _commit(bootstrap: str, group: str, moves: list[Move]) -> None:
    consumer = await _consumer(bootstrap, group)
    try:
        offsets = {TopicPartition(m.topic, m.partition): OffsetAndMetadata(m.new, "") for m in moves}
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


def replay(settings: Settings, service: str, *, since: dt.datetime | None, topics: Iterable[str] = (),
           dry_run: bool = False) -> list[Move]:
    """Move the service's group back to `since` (None: the log start) on its topics (or only `topics`)."""
    target = targets(settings, service)
    chosen = tuple(topics)
    unknown = sorted(set(chosen) - set(target.topics))
    if unknown:
        raise ConfigError(f"{service} does not read {', '.join(unknown)} (it reads e.g. {target.topics[0]})")
    if chosen:
        target = Target(target.group, chosen)

    async def run() -> list[Move]:
        await _require_stopped(settings.bootstrap, target.group, service)
        moves = await _moves(settings.bootstrap, target, since)
        if not dry_run and moves:
            await _require_stopped(settings.bootstrap, target.group, service)
            await _commit(settings.bootstrap, target.group, moves)
        return moves

    return asyncio.run(run())


@dataclass(frozen=True)
class Rebuild:
    deleted: tuple[str, ...]
    moves: tuple[Move, ...]
    trimmed: dict[str, int]  # event topic -> messages already deleted by retention (not in the rebuilt state)


async def _delete_topics(bootstrap: str, names: list[str], timeout: float = 60.0) -> list[str]:
    admin = AdminClient(bootstrap_servers=bootstrap, **client_options(), request_timeout_ms=_TIMEOUT_MS)
    try:
        await admin.start()
        present = [n for n in names if n in set(await admin.list_topics())]
        if present:
            await admin.delete_topics(present, timeout_ms=_TIMEOUT_MS)
        deadline = asyncio.get_running_loop().time() + timeout
        while set(present) & set(await admin.list_topics()):  # deletion completes in the background
            if asyncio.get_running_loop().time() > deadline:
                raise BrokerUnavailable(f"topics not deleted after {timeout:.0f} s: {', '.join(present)}")
            await asyncio.sleep(0.2)
        return present
    except KafkaError as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap}: {exc}") from None
    finally:
        await admin.close()


def rebuild_monitor(settings: Settings, *, dry_run: bool = False) -> Rebuild:
    """Delete and recreate the monitor's own topics, move its groups to the log start (monitor stopped)."""
    from services.monitor.app import monitor_topics
    from services.monitor.topics import MonitorTopics

    t = MonitorTopics(settings.monitor_app_id)
    own = [spec.name for spec in monitor_topics(settings.monitor_app_id)]
    events = targets(settings, "monitor")

    async def run() -> Rebuild:
        for group in t.groups:
            await _require_stopped(settings.bootstrap, group, "monitor")
        moves = await _moves(settings.bootstrap, events, None)
        trimmed: dict[str, int] = {}
        for m in moves:
            if m.new > 0:
                trimmed[m.topic] = trimmed.get(m.topic, 0) + m.new
        if dry_run:
            return Rebuild(tuple(own), tuple(moves), trimmed)
        deleted = await _delete_topics(settings.bootstrap, own)
        await ensure_topics(settings.bootstrap, settings.partitions, monitor_topics(settings.monitor_app_id))
        await _commit(settings.bootstrap, t.person_group, moves)
        for group, topic in ((t.household_group, t.household_events), (t.village_group, t.village_disasters)):
            later = await _moves(settings.bootstrap, Target(group, (topic,)), None)
            await _commit(settings.bootstrap, group, later)  # offset 0 of the new, empty topic
            moves += later
        return Rebuild(tuple(deleted), tuple(moves), trimmed)

    return asyncio.run(run())
