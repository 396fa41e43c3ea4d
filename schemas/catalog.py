"""The topic catalogue: every feed and every topic povwatch uses, as data (DESIGN.md, "Topics").

This is the one list. A connector's `FeedSpec` takes its department, feed name, topic and Avro record from the
entry here (connectors/catalog.py checks that every entry has exactly one connector), and the services build
their topic lists from it (`project_topics()`, the monitor's input topics). Adding a feed starts here.

    EVENT_FEEDS       department feeds that publish events on events.<dept>.<feed>
    ROSTER            the bureau's roster (Person records on registry.persons; its dead letters on dlq.bureau)
    INTAKE_CHANNELS   the intake API's channels (IntakeReport records on events.intake.<channel>); kept apart
                      from EVENT_FEEDS: they have no file connector, and the monitor does not consume them yet
    project_topics()  every topic, with its compaction
"""
from __future__ import annotations

from dataclasses import dataclass

from schemas.topics import (
    ALERTS_HOUSEHOLD,
    ALERTS_REGIONAL,
    CASEFEED_DLQ,
    MONITOR_DLQ,
    REGISTRY_HOUSEHOLDS,
    REGISTRY_PERSONS,
    TopicSpec,
    dlq_topic,
    event_topic,
)

__all__ = [
    "Feed",
    "REGISTRATION_CHANGE",
    "VEHICLE_PURCHASE",
    "HOSPITALIZATION",
    "DISASTER_LOSS",
    "DROPOUT",
    "EVENT_FEEDS",
    "ROSTER",
    "INTAKE",
    "INTAKE_CHANNELS",
    "INTAKE_SCHEMA",
    "event_topics",
    "intake_topics",
    "departments",
    "project_topics",
]


@dataclass(frozen=True)
class Feed:
    """What travels on the wire for one feed: who sends it, its name, the topic and the Avro record."""

    department: str  # slug of DOMAIN.md, e.g. medical-security
    feed: str  # e.g. hospitalization
    schema: str  # full name of the Avro record, schemas/avro/<schema>.avsc
    topic: str

    @property
    def dlq(self) -> str:
        """Where this feed's rejected rows go."""
        return dlq_topic(self.department)


def _event_feed(department: str, feed: str, schema: str) -> Feed:
    return Feed(department, feed, schema, event_topic(department, feed))


REGISTRATION_CHANGE = _event_feed("public-security", "registration-change", "povwatch.events.RegistrationChange")
VEHICLE_PURCHASE = _event_feed("public-security", "vehicle-purchase", "povwatch.events.VehiclePurchase")
HOSPITALIZATION = _event_feed("medical-security", "hospitalization", "povwatch.events.Hospitalization")
DISASTER_LOSS = _event_feed("emergency", "disaster-loss", "povwatch.events.DisasterLoss")
DROPOUT = _event_feed("education", "dropout", "povwatch.events.Dropout")

EVENT_FEEDS: tuple[Feed, ...] = (REGISTRATION_CHANGE, VEHICLE_PURCHASE, HOSPITALIZATION, DISASTER_LOSS, DROPOUT)

ROSTER = Feed("bureau", "roster", "povwatch.registry.Person", REGISTRY_PERSONS)

# The intake API (FEEDS.md, "The intake channels"): JSON requests, one IntakeReport each, on events.intake.<channel>.
# Invalid requests are answered 422, never dead-lettered, so "intake" has no dlq topic.
INTAKE = "intake"
INTAKE_SCHEMA = "povwatch.events.IntakeReport"
INTAKE_CHANNELS: tuple[Feed, ...] = tuple(
    _event_feed(INTAKE, channel, INTAKE_SCHEMA) for channel in ("self-declaration", "cadre-visit", "social-clue")
)


def event_topics() -> tuple[str, ...]:
    """The department event topics, in catalogue order."""
    return tuple(feed.topic for feed in EVENT_FEEDS)


def intake_topics() -> tuple[str, ...]:
    """The intake channels' topics, in catalogue order."""
    return tuple(channel.topic for channel in INTAKE_CHANNELS)


def departments() -> list[str]:
    """Every department that sends data (each has its dead-letter topic), sorted."""
    return sorted({feed.department for feed in EVENT_FEEDS} | {ROSTER.department})


def project_topics() -> list[TopicSpec]:
    """Every topic povwatch uses. Registry topics are compacted: the latest record per key wins."""
    specs = [TopicSpec(REGISTRY_PERSONS, compacted=True), TopicSpec(REGISTRY_HOUSEHOLDS, compacted=True)]
    specs += [TopicSpec(topic) for topic in event_topics()]
    specs += [TopicSpec(topic) for topic in intake_topics()]
    specs += [TopicSpec(dlq_topic(d)) for d in departments()] + [TopicSpec(MONITOR_DLQ), TopicSpec(CASEFEED_DLQ)]
    specs += [TopicSpec(ALERTS_HOUSEHOLD), TopicSpec(ALERTS_REGIONAL)]
    return specs
