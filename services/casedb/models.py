"""The case DB's tables (SQLAlchemy 2.x ORM), on one metadata (`Base`), versioned by Alembic (services/casedb/
migrations, run by services/casedb/schema.py), and the column types they share.

    cases            one subject - a household (subject_kind "household": `household_or_region` holds its household
                     id) or a village (subject_kind "village": its region code) - with a status and the highest
                     severity of its evidence; at most one OPEN case per subject (a partial unique index)
    evidence         one alert, stored exactly once (keyed by alert_id), linked to the case alert it attaches to
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
    desk_sessions    the desk's logged-in sessions: a hash of the session id, the user, when it expires (a
                     logout, a password change or disabling the user deletes rows: every desk process sees it)

Column types: `UTCDateTime` (every timestamp: stored in UTC, always read back timezone-aware), `sqlite_bounds`
(SQLite ignores VARCHAR lengths: CHECKs make it refuse what PostgreSQL refuses), and one width per kind of code:
`REGION_CODE_WIDTH` (a region code: 12-digit village, 9 township, 6 county), `HOUSEHOLD_ID_WIDTH`.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "UTCDateTime", "sqlite_bounds", "REGION_CODE_WIDTH", "HOUSEHOLD_ID_WIDTH", "Case", "Evidence",
           "CaseAlert", "CaseHistory", "Household", "Member", "User", "AuditEntry", "OutboxMessage",
           "ComparisonRequest", "ComparisonTarget", "ComparisonAnswer", "EvidenceEvent", "ScreeningTask",
           "HouseholdProfile", "DeskSessionRow", "MAX_ID"]

REGION_CODE_WIDTH = 12  # a region code: 12-digit village, 9 township, 6 county, 4 (6527) bureau
HOUSEHOLD_ID_WIDTH = 64  # a household id; a case's household_or_region holds one or a region code
MAX_ID = 2**31 - 1  # the largest id an INTEGER primary key holds on every database (PostgreSQL's int4)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware datetime stored as UTC (naive values are taken as UTC) that always comes back aware (UTC);
    SQLite keeps no offset. The column type of every timestamp of the case DB."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def sqlite_bounds(**limits: int) -> list[CheckConstraint]:
    """SQLite ignores VARCHAR lengths; these CHECKs make it refuse what PostgreSQL refuses (value too long)."""
    return [CheckConstraint(f"length({column}) <= {limit}", name=f"{column}_at_most_{limit}").ddl_if(dialect="sqlite")
            for column, limit in limits.items()]


class Base(DeclarativeBase):
    """The case DB's metadata: every table below, and the naming convention of its constraints."""

    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s", "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s", "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s"})


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint("subject_kind IN ('household', 'village')", name="subject_kind"),
        CheckConstraint("status IN ('OPEN', 'CLOSED')", name="status"),
        CheckConstraint("max_severity IN ('LOW', 'MEDIUM', 'HIGH')", name="max_severity"),
        # At most one OPEN case per subject; CLOSED ones may pile up. ddl_if's `dialect` takes a tuple of names as
        # SQLAlchemy documents and implements, but is annotated `str | None`: hence the type: ignore.
        Index("uq_cases_open_subject", "subject_kind", "household_or_region", unique=True,
              sqlite_where=text("status = 'OPEN'"), postgresql_where=text("status = 'OPEN'")
              ).ddl_if(dialect=("sqlite", "postgresql")),  # type: ignore[arg-type]
        *sqlite_bounds(household_or_region=HOUSEHOLD_ID_WIDTH, village_code=REGION_CODE_WIDTH),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subject_kind: Mapped[str] = mapped_column(String(16))
    # the household id of a household case, the region code of a village case (subject_kind says which)
    household_or_region: Mapped[str] = mapped_column(String(HOUSEHOLD_ID_WIDTH), index=True)
    village_code: Mapped[str] = mapped_column(String(REGION_CODE_WIDTH), index=True)
    status: Mapped[str] = mapped_column(String(8), default="OPEN")
    max_severity: Mapped[str] = mapped_column(String(8))
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    evidence: Mapped[list[Evidence]] = relationship(
        back_populates="case", order_by=lambda: (Evidence.raised_at, Evidence.id))


class Evidence(Base):
    __tablename__ = "evidence"
    __table_args__ = (CheckConstraint("severity IN ('LOW', 'MEDIUM', 'HIGH')", name="severity"),
                      *sqlite_bounds(alert_id=128, source_topic=255))

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(128), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    rule: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text)
    event_ids: Mapped[list[str]] = mapped_column(JSON)
    household_ids: Mapped[list[str]] = mapped_column(JSON)
    occurred_at: Mapped[dt.date] = mapped_column(Date)
    raised_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    source_topic: Mapped[str] = mapped_column(String(255))
    # the case alert (services.casedb.models.CaseAlert) this evidence attached to; None only for rows written
    # before revision 0002 and not linked by it (there are none: 0002 links every row)
    case_alert_id: Mapped[int | None] = mapped_column(ForeignKey("case_alerts.id"), index=True)
    case: Mapped[Case] = relationship(back_populates="evidence")


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
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    case: Mapped[Case] = relationship()  # a batch of the case feed opens an alert on a case not yet flushed


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
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)
    override_reason: Mapped[str | None] = mapped_column(Text)


class Household(Base):
    __tablename__ = "households"

    household_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    village_code: Mapped[str] = mapped_column(String(REGION_CODE_WIDTH), index=True)
    head_person_key: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(16))
    monitoring_status: Mapped[str] = mapped_column(String(16))
    labour_capacity: Mapped[str] = mapped_column(String(8))
    per_capita_income: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    household_size: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


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
    region: Mapped[str] = mapped_column(String(REGION_CODE_WIDTH))  # a region code (REGION_CODE_WIDTH)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class AuditEntry(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    user_name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))  # VIEW_CASE, VIEW_WORKLIST, ADVANCE, REFUSED, ...
    household_id: Mapped[str | None] = mapped_column(String(64), index=True)
    case_id: Mapped[int | None] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[bytes] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    published_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)


class ComparisonRequest(Base):
    __tablename__ = "comparison_requests"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    department: Mapped[str] = mapped_column(String(32), index=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)  # None: all monitored
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
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
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class EvidenceEvent(Base):
    """One event behind one alert (alerts.household/regional `event_ids`), with the topic it came from."""

    __tablename__ = "evidence_events"
    __table_args__ = (UniqueConstraint("alert_id", "event_id"),
                      *sqlite_bounds(alert_id=128, event_id=64, topic=255, department=32))

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(128), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(255))  # None: recorded before the alert named its topics
    department: Mapped[str | None] = mapped_column(String(32))
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


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
    village_code: Mapped[str] = mapped_column(String(REGION_CODE_WIDTH))
    township_code: Mapped[str] = mapped_column(String(9), index=True)
    status: Mapped[str] = mapped_column(String(8), default="OPEN")
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))  # a user's name, or "cadre-visit" for a cadre visit
    close_note: Mapped[str | None] = mapped_column(Text)
    closing_event_id: Mapped[str | None] = mapped_column(String(64))


class HouseholdProfile(Base):
    """The household as the monitor sees it (profiles.household, materialised by the case feed)."""

    __tablename__ = "household_profiles"
    __table_args__ = (*sqlite_bounds(household_id=HOUSEHOLD_ID_WIDTH, village_code=REGION_CODE_WIDTH),)

    household_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    village_code: Mapped[str] = mapped_column(String(REGION_CODE_WIDTH), index=True)
    facts: Mapped[list[dict[str, str]]] = mapped_column(JSON)  # the latest fact per domain
    income_year: Mapped[int | None] = mapped_column(Integer)
    income_per_capita: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class DeskSessionRow(Base):
    """A logged-in session of the desk (services/desk/sessions.py): the cookie holds the session id, this table
    only its SHA-256 (a copy of the table gives no usable cookie)."""

    __tablename__ = "desk_sessions"
    __table_args__ = (*sqlite_bounds(sid_hash=64, user_name=64),)

    sid_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
