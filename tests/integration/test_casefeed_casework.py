"""Issue #11 through a real `povwatch casefeed` child (the real broker, PostgreSQL of scripts/postgres.sh, watched
through /metrics, as tests/integration/test_casefeed_faults.py): schema-v2 alerts carrying event_topics, a death
reported by public security and then re-emitted with health's event and a higher severity (one alert, two
departments, an escalation), and povwatch_cases_overdue counted at the feed's start."""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from plumbing.kafka_io import ensure_topics
from plumbing.processes import metric
from schemas.catalog import INTAKE_CHANNELS
from schemas.topics import TopicSpec
from services.casedb.database import open_database
from services.casedb.models import CaseAlert
from tests.integration.test_casedb_postgres import pg_url  # noqa: F401  (the module's PostgreSQL)
from tests.integration.test_casefeed_faults import VILLAGE, Feed, feed, publish  # noqa: F401  (feed: a fixture)

pytestmark = pytest.mark.integration

PS = "events.public-security.registration-change"
HEALTH = "events.health.chronic-disease"


def death(alert_id: str, household: str, events: list[tuple[str, str]], severity: str) -> dict[str, Any]:
    return {"alert_id": alert_id, "household_id": household, "village_code": VILLAGE, "rule": "DEATH_IN_HOUSEHOLD",
            "severity": severity, "reason": "家庭成员死亡(户主, 44岁, 2025-06-02)",
            "event_ids": [e for e, _ in events], "event_topics": [t for _, t in events],
            "occurred_at": dt.date(2025, 6, 2), "raised_at": dt.datetime(2025, 6, 3, tzinfo=dt.UTC)}


def test_one_fact_two_departments_and_the_overdue_gauge(feed: Feed) -> None:  # noqa: F811
    r = feed.run
    with open_database(feed.db_url) as store:  # an alert nobody acknowledged for 20 days, before the feed starts
        old = store.record_household_alert({**death(f"{r}-old", f"{r}-H0", [(f"{r}-e0", PS)], "MEDIUM")})
        with Session(store.engine) as session, session.begin():
            session.execute(update(CaseAlert).where(CaseAlert.id == old.case_alert_id)
                            .values(opened_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=20)))
    publish(feed.bootstrap, [death(f"{r}-d", f"{r}-H1", [(f"{r}-ps", PS)], "MEDIUM"),
                             death(f"{r}-d", f"{r}-H1", [(f"{r}-ps", PS), (f"{r}-health", HEALTH)], "HIGH"),
                             death(f"{r}-d", f"{r}-H1", [(f"{r}-ps", PS), (f"{r}-health", HEALTH)], "HIGH")])
    # the casefeed also reads the cadres' visits (screening tasks): their topic must exist on the broker
    asyncio.run(ensure_topics(feed.bootstrap, 3, [TopicSpec(c.topic) for c in INTAKE_CHANNELS]))
    feed.start()
    samples = feed.wait(lambda s: metric(s, "povwatch_casefeed_alerts_updated_total") >= 1
                        and metric(s, "povwatch_casefeed_duplicates_total") >= 1, "the re-emission merged")
    assert metric(samples, "povwatch_cases_evidence_written_total") == 1
    assert metric(samples, "povwatch_casefeed_escalations_total") == 1
    assert metric(samples, "povwatch_cases_overdue") == 1  # counted at the start: the 20-day-old alert
    assert feed.evidence() == {f"{r}-d": 1, f"{r}-old": 1}
    rows = feed.query("SELECT event_id, topic, department FROM evidence_events WHERE alert_id = :a ORDER BY id",
                      a=f"{r}-d")
    assert [tuple(row) for row in rows] == [(f"{r}-ps", PS, "public-security"), (f"{r}-health", HEALTH, "health")]
    [(severity,)] = feed.query("SELECT severity FROM case_alerts WHERE household_id = :h", h=f"{r}-H1")
    assert severity == "HIGH"
    [(note,)] = feed.query("SELECT note FROM case_history WHERE household_id = :h AND kind = 'ESCALATION'",
                           h=f"{r}-H1")
    assert note == f"DEATH_IN_HOUSEHOLD MEDIUM -> HIGH (alert {r}-d)"
