"""The case DB's tables for the bureau's work on cases (issue #7), on the same metadata as the alert tables of
services/casefeed/db.py (`cases`, `evidence`). Versioned with Alembic (services/casefeed/migrations).

    case_alerts      an alert of a case: one per (case, rule) while not RESOLVED; OPEN -> ACKNOWLEDGED -> RESOLVED;
                     its severity is the highest of its evidence (an escalation is recorded in case_history)
    case_history     everything that happened to a case: each workflow step (who, the day it happened, when
                     recorded, note, override reason), escalations, acknowledgements, resolutions
    households       the bureau's roster as the case DB holds it (names never leave the case DB): category,
    members          status, labour capacity, income, size, head's person_key; each member's name, relation
    users            case workers: name, role (village/township/county/bureau), region code, password hash
    audit_log        every view of a household's case and every action: who, when, what
    outbox           messages to publish (registry.household-status after LABEL / ANNOUNCE_LABEL), written in the
                     step's transaction, published by the relay, marked published_at
    comparison_requests / comparison_targets / comparison_answers
                     比对: a request to a department for the person keys of households; its answers
    evidence_events  one row per (alert, event): every department's event behind an alert (one fact, one alert:
                     a second department's report of the same fact adds a row, not an alert)
    screening_tasks  集中排查: one task per household and screening period, closed by a cadre visit or by hand
    household_profiles
                     the household as the monitor sees it: the latest fact per domain, the latest income
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from services.casefeed.db import Base, _sqlite_bounds, _UTCDateTime

__all__ = ["CaseAlert", "CaseHistory", "Household", "Member", "User", "AuditEntry", "OutboxMessage",
           "ComparisonRequest", "ComparisonTarget", "ComparisonAnswer", "EvidenceEvent", "ScreeningTask",
           "HouseholdProfile"]


class CaseAlert(Base):
    __tablename__ = "case_alerts"
    __table_args__ = (
        CheckConstraint("status IN ('OPEN', 'ACKNOWLEDGED', 'RESOLVED')", name="status"),
        CheckConstraint("severity IN ('LOW', 'MEDIUM', 'HIGH')", name="severity"),
        # at most one alert per case and rule that is not resolved
        Index("uq_case_alerts_live_rule", "case_id", "rule", unique=True,
              sqlite_where=text("status != 'RESOLVED'"), postgresql_where=text("status != 'RESOLVED'")
              ).ddl_if(dialect=("sqlite", "postgresql")),  # type: ignore[arg-type]
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    household_id: Mapped[str] = mapped_column(String(64), index=True)  # the case's subject (village for regional)
    rule: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="OPEN")
    severity: Mapped[str] = mapped_column(String(8))
    opened_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(_UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(_UTCDateTime())


class CaseHistory(Base):
    __tablename__ = "case_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    household_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # STEP, ESCALATION, ACKNOWLEDGE, RESOLVE, AUTHORISE
    workflow: Mapped[str | None] = mapped_column(String(16))
    step: Mapped[str | None] = mapped_column(String(20))
    by_user: Mapped[str] = mapped_column(String(64))  # a user's name, or "casefeed" for escalations
    on_day: Mapped[dt.date] = mapped_column(Date)  # the day it happened (a step's --on)
    recorded_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)
    override_reason: Mapped[str | None] = mapped_column(Text)


class Household(Base):
    __tablename__ = "households"

    household_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    head_person_key: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    monitoring_status: Mapped[str] = mapped_column(String(16))
    labour_capacity: Mapped[str] = mapped_column(String(8))
    per_capita_income: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    household_size: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())


class Member(Base):
    __tablename__ = "members"

    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    household_id: Mapped[str] = mapped_column(ForeignKey("households.household_id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    relation: Mapped[str] = mapped_column(String(16))
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[dt.date] = mapped_column(Date)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('village', 'township', 'county', 'bureau')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    region: Mapped[str] = mapped_column(String(12))  # 12-digit village, 9 township, 6 county, 4 (6527) bureau
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(_UTCDateTime(), index=True)
    user_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # VIEW_CASE, VIEW_WORKLIST, ADVANCE, REFUSED, ...
    household_id: Mapped[str | None] = mapped_column(String(64), index=True)
    case_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    published_at: Mapped[dt.datetime | None] = mapped_column(_UTCDateTime(), index=True)


class ComparisonRequest(Base):
    __tablename__ = "comparison_requests"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    department: Mapped[str] = mapped_column(String(32), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)  # None: all monitored
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())
    persons: Mapped[int] = mapped_column(Integer)


class ComparisonTarget(Base):
    __tablename__ = "comparison_targets"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("comparison_requests.request_id"), index=True)
    person_key: Mapped[str] = mapped_column(String(64))
    household_id: Mapped[str] = mapped_column(String(64), index=True)


class ComparisonAnswer(Base):
    __tablename__ = "comparison_answers"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    request_id: Mapped[str] = mapped_column(String(64), index=True)
    department: Mapped[str] = mapped_column(String(32))
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    found: Mapped[bool] = mapped_column(Boolean)
    summary: Mapped[str] = mapped_column(Text)  # Chinese, for the case worker: what the department holds
    records: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    received_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())


class EvidenceEvent(Base):
    """One event behind one alert (alerts.household/regional `event_ids`), with the topic it came from."""

    __tablename__ = "evidence_events"
    __table_args__ = (UniqueConstraint("alert_id", "event_id"),
                      *_sqlite_bounds(alert_id=128, event_id=64, topic=255, department=32))

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(128), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(255))  # None: recorded before the alert named its topics
    department: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())


class ScreeningTask(Base):
    """集中排查: one household to screen in one period (quarterly: focus households; annual: every household)."""

    __tablename__ = "screening_tasks"
    __table_args__ = (
        CheckConstraint("status IN ('OPEN', 'CLOSED')", name="status"),
        CheckConstraint("kind IN ('quarterly', 'annual')", name="kind"),
        UniqueConstraint("period", "household_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(8), index=True)  # 2026Q4 or 2026
    kind: Mapped[str] = mapped_column(String(16))
    household_id: Mapped[str] = mapped_column(String(64), index=True)
    village_code: Mapped[str] = mapped_column(String(12))
    township_code: Mapped[str] = mapped_column(String(9), index=True)
    status: Mapped[str] = mapped_column(String(8), default="OPEN")
    opened_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(_UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))  # a user's name, or "cadre-visit" for a cadre visit
    close_note: Mapped[str | None] = mapped_column(Text)
    closing_event_id: Mapped[str | None] = mapped_column(String(64))


class HouseholdProfile(Base):
    """The household as the monitor sees it (profiles.household, materialised by the case feed)."""

    __tablename__ = "household_profiles"
    __table_args__ = (*_sqlite_bounds(household_id=64, village_code=12),)

    household_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    village_code: Mapped[str] = mapped_column(String(12), index=True)
    facts: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # the latest fact per domain
    income_year: Mapped[int | None] = mapped_column(Integer)
    income_per_capita: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    updated_at: Mapped[dt.datetime] = mapped_column(_UTCDateTime())
