"""The whole risk model (issue #11): evidence per (alert, event), screening tasks, household profiles.

Schema: `evidence_events` (one row per alert and event, unique together; the topic and department when the alert
names them), `screening_tasks` (集中排查: one per period and household), `household_profiles` (the latest fact per
domain and the latest income of a household, from profiles.household).

Data: every event id of the existing evidence rows becomes an `evidence_events` row (topic and department
unknown: the alerts before this revision did not name them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "evidence_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.String(128), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("topic", sa.String(255), nullable=True),
        sa.Column("department", sa.String(32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_events")),
        sa.UniqueConstraint("alert_id", "event_id", name=op.f("uq_evidence_events_alert_id_event_id")),
        *_sqlite_bounds("evidence_events", alert_id=128, event_id=64, topic=255, department=32))
    op.create_index("ix_evidence_events_alert_id", "evidence_events", ["alert_id"])
    op.create_table(
        "household_profiles",
        sa.Column("household_id", sa.String(64), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=False),
        sa.Column("income_year", sa.Integer(), nullable=True),
        sa.Column("income_per_capita", sa.Numeric(14, 2), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("household_id", name=op.f("pk_household_profiles")),
        *_sqlite_bounds("household_profiles", household_id=64, village_code=12))
    op.create_index("ix_household_profiles_village_code", "household_profiles", ["village_code"])
    op.create_table(
        "screening_tasks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("household_id", sa.String(64), nullable=False),
        sa.Column("village_code", sa.String(12), nullable=False),
        sa.Column("township_code", sa.String(9), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(64), nullable=True),
        sa.Column("close_note", sa.Text(), nullable=True),
        sa.Column("closing_event_id", sa.String(64), nullable=True),
        sa.CheckConstraint("kind IN ('quarterly', 'annual')", name=op.f("ck_screening_tasks_kind")),
        sa.CheckConstraint("status IN ('OPEN', 'CLOSED')", name=op.f("ck_screening_tasks_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_screening_tasks")),
        sa.UniqueConstraint("period", "household_id", name=op.f("uq_screening_tasks_period_household_id")))
    for column in ("household_id", "period", "township_code"):
        op.create_index(f"ix_screening_tasks_{column}", "screening_tasks", [column])
    _events_from_evidence()


def _sqlite_bounds(table: str, **limits: int) -> list[sa.CheckConstraint]:
    """As services/casedb/models.py's `sqlite_bounds`: SQLite refuses too long a value, as PostgreSQL does."""
    if op.get_bind().dialect.name != "sqlite":
        return []
    return [sa.CheckConstraint(f"length({column}) <= {limit}", name=op.f(f"ck_{table}_{column}_at_most_{limit}"))
            for column, limit in limits.items()]


def _events_from_evidence() -> None:
    """One evidence_events row per event id of each existing evidence row."""
    bind = op.get_bind()
    meta = sa.MetaData()
    evidence = sa.Table("evidence", meta, sa.Column("alert_id", sa.String(128)), sa.Column("event_ids", sa.JSON()),
                        sa.Column("received_at", sa.DateTime(timezone=True)))
    events = sa.Table("evidence_events", meta, sa.Column("alert_id", sa.String(128)),
                      sa.Column("event_id", sa.String(64)), sa.Column("received_at", sa.DateTime(timezone=True)))
    rows = []
    for alert_id, event_ids, received in bind.execute(sa.select(evidence.c.alert_id, evidence.c.event_ids,
                                                                evidence.c.received_at)):
        for event_id in dict.fromkeys(event_ids or ()):
            rows.append({"alert_id": alert_id, "event_id": str(event_id)[:64],
                         "received_at": received or dt.datetime.now(dt.UTC)})
    if rows:
        op.bulk_insert(events, rows)


def downgrade() -> None:
    for table in ("screening_tasks", "household_profiles", "evidence_events"):
        op.drop_table(table)
