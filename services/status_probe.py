"""The I/O behind `povwatch status`: asks Kafka (through plumbing.kafka_io) and reads the monitor's /metrics,
then hands the facts to services/status.py.

The broker must answer (else BrokerUnavailable: one line, exit 2); a monitor that does not answer is a fact
of the report, not an error. Committed offsets are read before end offsets, so a lag is never understated.
"""
from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request

from plumbing import kafka_io
from plumbing.settings import Settings
from schemas import catalog
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL, PROFILES_HOUSEHOLD, event_topic
from services.casefeed.profile_feed import profiles_group
from services.casefeed.screening_feed import screening_group
from services.monitor.topics import MonitorTopics
from services.status import (
    GroupStatus,
    MonitorStatus,
    StatusReport,
    monitor_metrics,
    partition_lags,
    unreachable_monitor,
)

__all__ = ["probe", "read_monitor", "METRICS_TIMEOUT_S"]

METRICS_TIMEOUT_S = 3.0


def _groups(settings: Settings) -> list[tuple[str, str, tuple[str, ...]]]:
    """(role, group id, the topics it consumes for sure) of the consumer groups an operator watches; topics it
    committed on besides these (internal ones) are shown too."""
    t = MonitorTopics(settings.monitor_app_id)
    return [("monitor", t.person_group, tuple(f.topic for f in catalog.monitored_feeds())),
            ("monitor household stage", t.household_group, (t.household_events,)),
            ("monitor village stage", t.village_group, (t.village_disasters,)),
            ("casefeed", settings.casefeed_group, (ALERTS_HOUSEHOLD, ALERTS_REGIONAL)),
            ("casefeed profiles", profiles_group(settings.casefeed_group), (PROFILES_HOUSEHOLD,)),
            ("casefeed screening", screening_group(settings.casefeed_group),
             (event_topic(catalog.INTAKE, "cadre-visit"),))]


async def _kafka(settings: Settings) -> tuple[int, dict[str, tuple[tuple[int, int], ...]], tuple[str, ...],
                                             tuple[GroupStatus, ...]]:
    bootstrap = settings.bootstrap
    brokers = await kafka_io.broker_count(bootstrap)
    described = []
    for role, group, inputs in _groups(settings):
        committed = await kafka_io.group_offsets(bootstrap, group)
        state, members = await kafka_io.describe_group(bootstrap, group)
        described.append((role, group, inputs, committed, state, members))
    wanted = [spec.name for spec in catalog.project_topics()]
    extra = sorted({t for *_, committed, _, _ in described for t, _ in committed} - set(wanted))
    offsets = await kafka_io.topic_offsets(bootstrap, wanted + extra)
    topics = {name: tuple(offsets[name]) for name in wanted if name in offsets}
    missing = tuple(name for name in wanted if name not in offsets)
    groups = tuple(GroupStatus(role, group, state, members, partition_lags(committed, offsets, inputs))
                   for role, group, inputs, committed, state, members in described)
    return brokers, topics, missing, groups


def read_monitor(url: str, timeout: float = METRICS_TIMEOUT_S) -> MonitorStatus:
    """The monitor's state from `url` (its /metrics), or why it could not be read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return unreachable_monitor(url, f"HTTP {exc.code}")
    except urllib.error.URLError as exc:
        reason = exc.reason.strerror if isinstance(exc.reason, OSError) and exc.reason.strerror else exc.reason
        return unreachable_monitor(url, str(reason))
    except TimeoutError:
        return unreachable_monitor(url, f"no answer within {timeout:.0f} s")
    except OSError as exc:
        return unreachable_monitor(url, exc.strerror or type(exc).__name__)
    return monitor_metrics(url, text)


def probe(settings: Settings) -> StatusReport:
    """Everything `povwatch status` shows. Synchronous (uses asyncio.run)."""
    quiet = logging.getLogger("aiokafka")  # a refused connection is reported once, by BrokerUnavailable
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        brokers, topics, missing, groups = asyncio.run(_kafka(settings))
    finally:
        quiet.setLevel(level)
    monitor = read_monitor(f"http://127.0.0.1:{settings.monitor_metrics_port}/metrics")
    return StatusReport(settings.bootstrap, brokers, topics, missing, groups, monitor)
