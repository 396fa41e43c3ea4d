"""Who reported an alert's events, in the case workers' words: a Chinese short name per department (and per intake
channel), the department of an event topic, and the "公安、卫健 印证" line of an alert that several departments
report (one fact, one alert: docs/rules.md). Pure: no I/O.

    department_of_topic("events.health.chronic-disease")        -> "health"   (schemas.catalog; None if unknown)
    source_label("intake", "events.intake.cadre-visit")         -> "基层干部排查"
    source_label("public-security", None)                       -> "公安"
    source_label(None, None)                                    -> "来源未记录"
    corroboration(["公安", "卫健"])                             -> "公安、卫健 印证"   (None for fewer than two)
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.catalog import INTAKE, feed_of_topic

__all__ = ["DEPARTMENT_NAMES", "CHANNEL_NAMES", "UNKNOWN_SOURCE", "EventSource", "department_of_topic",
           "source_label", "event_source", "sources_of", "corroboration"]

# the departments of schemas/catalog.py (every one that sends events) by their slug
DEPARTMENT_NAMES: dict[str, str] = {
    "public-security": "公安", "health": "卫健", "medical-security": "医保", "education": "教育",
    "civil-affairs": "民政", "hrss": "人社", "housing": "住建", "natural-resources": "自然资源", "water": "水利",
    "agriculture": "农业农村", "cac": "网信", "pboc": "人行", "disabled-federation": "残联",
    "market-regulation": "市场监管", "statistics": "统计", "farm-machinery": "农机", "emergency": "应急",
    INTAKE: "群众及干部报告",
}
# the intake channels (events.intake.<channel>): named by channel rather than as "intake"
CHANNEL_NAMES: dict[str, str] = {"self-declaration": "农户自主申报", "cadre-visit": "基层干部排查",
                                 "social-clue": "社会信息补充"}
UNKNOWN_SOURCE = "来源未记录"  # an event stored before alerts named their topics (case DB revision 0003)


@dataclass(frozen=True)
class EventSource:
    """One event behind an alert: its id, the topic it came from, the department (slug) and its Chinese name."""

    event_id: str
    topic: str | None
    department: str | None
    source: str  # source_label(department, topic)


def department_of_topic(topic: str | None) -> str | None:
    """The department (slug) that publishes `topic`, per schemas.catalog; None for a topic it does not know."""
    feed = feed_of_topic(topic) if topic else None
    return feed.department if feed is not None else None


def source_label(department: str | None, topic: str | None) -> str:
    """The Chinese short name of who reported an event: the intake channel's name for an intake topic, else the
    department's; the slug itself for a department not in the map; UNKNOWN_SOURCE when neither is known."""
    if department == INTAKE and topic:
        channel = topic.rsplit(".", 1)[-1]
        if channel in CHANNEL_NAMES:
            return CHANNEL_NAMES[channel]
    if department:
        return DEPARTMENT_NAMES.get(department, department)
    return UNKNOWN_SOURCE


def event_source(event_id: str, topic: str | None, department: str | None) -> EventSource:
    return EventSource(event_id=event_id, topic=topic, department=department,
                       source=source_label(department, topic))


def sources_of(events: Iterable[EventSource]) -> tuple[str, ...]:
    """The distinct known sources of `events`, in order of first appearance (unknown ones left out)."""
    return tuple(dict.fromkeys(e.source for e in events if e.department is not None))


def corroboration(sources: Iterable[str]) -> str | None:
    """"公安、卫健 印证" when two or more distinct sources report the fact; None otherwise."""
    distinct = list(dict.fromkeys(sources))
    return f"{'、'.join(distinct)} 印证" if len(distinct) >= 2 else None
