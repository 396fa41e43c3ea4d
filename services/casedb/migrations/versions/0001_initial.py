"""The case DB of issue #2: `cases` (one subject - household or village - with a status and the highest
severity of its evidence) and `evidence` (one alert, stored once, keyed by alert_id).

Exactly the schema `create_all` made at commit d0a6d84, so that a DB created then (tables present, no
alembic_version) is stamped with this revision and upgraded from here.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

SEVERITIES = "('LOW', 'MEDIUM', 'HIGH')"


def _bounds(table: str, dialect: str, **limits: int) -> list[sa.CheckConstraint]:
    """SQLite ignores VARCHAR lengths: CHECKs make it refuse what PostgreSQL refuses (on SQLite only)."""
    if dialect != "sqlite":
        return []
    return [sa.CheckConstraint(f"length({column}) <= {limit}", name=op.f(f"ck_{table}_{column}_at_most_{limit}"))
            for column, limit in limits.items()]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("village_code", sa.String(32), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("max_severity", sa.String(8), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.CheckConstraint("subject_kind IN ('household', 'village')", name=op.f("ck_cases_subject_kind")),
        sa.CheckConstraint("status IN ('OPEN', 'CLOSED')", name=op.f("ck_cases_status")),
        sa.CheckConstraint(f"max_severity IN {SEVERITIES}", name=op.f("ck_cases_max_severity")),
        *_bounds("cases", dialect, subject_id=64, village_code=32),
    )
    op.create_index("ix_cases_subject_id", "cases", ["subject_id"])
    op.create_index("ix_cases_village_code", "cases", ["village_code"])
    if dialect in ("sqlite", "postgresql"):  # at most one OPEN case per subject
        op.create_index("uq_cases_open_subject", "cases", ["subject_kind", "subject_id"], unique=True,
                        sqlite_where=sa.text("status = 'OPEN'"), postgresql_where=sa.text("status = 'OPEN'"))
    op.create_table(
        "evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.String(128), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("event_ids", sa.JSON(), nullable=False),
        sa.Column("household_ids", sa.JSON(), nullable=False),
        sa.Column("occurred_at", sa.Date(), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_topic", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence")),
        sa.CheckConstraint(f"severity IN {SEVERITIES}", name=op.f("ck_evidence_severity")),
        *_bounds("evidence", dialect, alert_id=128, source_topic=255),
        sa.UniqueConstraint("alert_id", name=op.f("uq_evidence_alert_id")),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_evidence_case_id")),
    )
    op.create_index("ix_evidence_case_id", "evidence", ["case_id"])


def downgrade() -> None:
    op.drop_table("evidence")
    op.drop_table("cases")
