"""The bureau's work on cases (issue #7): the tables of services/casedb/models.py, and `evidence.case_alert_id`.

Schema: case_alerts, case_history, households, members, users, audit_log, outbox, comparison_requests,
comparison_targets, comparison_answers (each created only if missing: a DB made by the interim `create_all` of
commit 3b64b00 has them already, empty), and `evidence.case_alert_id`, a nullable foreign key to case_alerts.

Data: one case_alert per (case, rule) of the existing evidence - severity the highest of that evidence, status
OPEN for an OPEN case and RESOLVED for a CLOSED one (resolved when the case was last updated), opened and updated
when its first and last evidence arrived - and each evidence row linked to it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import SchemaItem

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

SEVERITIES = "('LOW', 'MEDIUM', 'HIGH')"
MIGRATED_BY = "migration 0002"  # resolved_by of the alerts of cases CLOSED before this revision


def _evidence(*, linked: bool) -> sa.Table:
    """`evidence` as revision 0001 made it (linked=False) or this one (True). SQLite cannot add or drop a foreign
    key: batch mode copies the table into a new one, and this is the definition it copies."""
    meta = sa.MetaData()
    sa.Table("cases", meta, sa.Column("id", sa.Integer(), primary_key=True))
    sa.Table("case_alerts", meta, sa.Column("id", sa.Integer(), primary_key=True))
    link = [sa.Column("case_alert_id", sa.Integer(), nullable=True),
            sa.ForeignKeyConstraint(["case_alert_id"], ["case_alerts.id"], name="fk_evidence_case_alert_id"),
            sa.Index("ix_evidence_case_alert_id", "case_alert_id")] if linked else []
    return sa.Table(
        "evidence", meta,
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
        sa.PrimaryKeyConstraint("id", name="pk_evidence"),
        sa.CheckConstraint(f"severity IN {SEVERITIES}", name="ck_evidence_severity"),
        sa.CheckConstraint("length(alert_id) <= 128", name="ck_evidence_alert_id_at_most_128"),
        sa.CheckConstraint("length(source_topic) <= 255", name="ck_evidence_source_topic_at_most_255"),
        sa.UniqueConstraint("alert_id", name="uq_evidence_alert_id"),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name="fk_evidence_case_id"),
        sa.Index("ix_evidence_case_id", "case_id"),
        *link,
    )


def _create_tables(existing: set[str], dialect: str) -> None:
    def table(name: str, *items: SchemaItem, indexes: tuple[tuple[str, ...], ...] = ()) -> None:
        if name in existing:
            return
        op.create_table(name, *items)
        for columns in indexes:
            op.create_index(f"ix_{name}_{'_'.join(columns)}", name, list(columns))

    table("case_alerts",
          sa.Column("id", sa.Integer(), nullable=False),
          sa.Column("case_id", sa.Integer(), nullable=False),
          sa.Column("household_id", sa.String(64), nullable=False),
          sa.Column("rule", sa.String(32), nullable=False),
          sa.Column("status", sa.String(16), nullable=False),
          sa.Column("severity", sa.String(8), nullable=False),
          sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
          sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
          sa.Column("acknowledged_by", sa.String(64), nullable=True),
          sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
          sa.Column("resolved_by", sa.String(64), nullable=True),
          sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
          sa.PrimaryKeyConstraint("id", name=op.f("pk_case_alerts")),
          sa.CheckConstraint("status IN ('OPEN', 'ACKNOWLEDGED', 'RESOLVED')", name=op.f("ck_case_alerts_status")),
          sa.CheckConstraint(f"severity IN {SEVERITIES}", name=op.f("ck_case_alerts_severity")),
          sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_alerts_case_id")),
          indexes=(("case_id",), ("household_id",)))
    if "case_alerts" not in existing and dialect in ("sqlite", "postgresql"):
        # at most one alert per case and rule that is not resolved
        live = sa.text("status != 'RESOLVED'")
        op.create_index("uq_case_alerts_live_rule", "case_alerts", ["case_id", "rule"], unique=True,
                        sqlite_where=live, postgresql_where=live)
    table("case_history",
          sa.Column("id", sa.Integer(), nullable=False),
          sa.Column("case_id", sa.Integer(), nullable=False),
          sa.Column("household_id", sa.String(64), nullable=False),
          sa.Column("kind", sa.String(16), nullable=False),
          sa.Column("workflow", sa.String(16), nullable=True),
          sa.Column("step", sa.String(20), nullable=True),
          sa.Column("by_user", sa.String(64), nullable=False),
          sa.Column("on_day", sa.Date(), nullable=False),
          sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
          sa.Column("note", sa.Text(), nullable=True),
          sa.Column("override_reason", sa.Text(), nullable=True),
          sa.PrimaryKeyConstraint("id", name=op.f("pk_case_history")),
          sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_case_history_case_id")),
          indexes=(("case_id",), ("household_id",)))
    table("households",
          sa.Column("household_id", sa.String(64), nullable=False),
          sa.Column("village_code", sa.String(12), nullable=False),
          sa.Column("head_person_key", sa.String(64), nullable=True),
          sa.Column("category", sa.String(16), nullable=False),
          sa.Column("monitoring_status", sa.String(16), nullable=False),
          sa.Column("labour_capacity", sa.String(8), nullable=False),
          sa.Column("per_capita_income", sa.Numeric(14, 2), nullable=False),
          sa.Column("household_size", sa.Integer(), nullable=False),
          sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
          sa.PrimaryKeyConstraint("household_id", name=op.f("pk_households")),
          indexes=(("village_code",),))
    table("members",
          sa.Column("person_key", sa.String(64), nullable=False),
          sa.Column("household_id", sa.String(64), nullable=False),
          sa.Column("name", sa.String(64), nullable=False),
          sa.Column("relation", sa.String(16), nullable=False),
          sa.Column("sex", sa.String(1), nullable=False),
          sa.Column("birth_date", sa.Date(), nullable=False),
          sa.PrimaryKeyConstraint("person_key", name=op.f("pk_members")),
          sa.ForeignKeyConstraint(["household_id"], ["households.household_id"], name=op.f("fk_members_household_id")),
          indexes=(("household_id",),))
    table("users",
          sa.Column("id", sa.Integer(), nullable=False),
          sa.Column("name", sa.String(64), nullable=False),
          sa.Column("role", sa.String(16), nullable=False),
          sa.Column("region", sa.String(12), nullable=False),
          sa.Column("password_hash", sa.String(255), nullable=False),
          sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
          sa.Column("active", sa.Boolean(), nullable=False),
          sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
          sa.CheckConstraint("role IN ('village', 'township', 'county', 'bureau')", name=op.f("ck_users_role")),
          sa.UniqueConstraint("name", name=op.f("uq_users_name")))
    table("audit_log",
          sa.Column("id", sa.Integer(), nullable=False),
          sa.Column("at", sa.DateTime(timezone=True), nullable=False),
          sa.Column("user_name", sa.String(64), nullable=False),
          sa.Column("action", sa.String(32), nullable=False),
          sa.Column("household_id", sa.String(64), nullable=True),
          sa.Column("case_id", sa.Integer(), nullable=True),
          sa.Column("detail", sa.Text(), nullable=True),
          sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
          indexes=(("at",), ("household_id",)))
    table("outbox",
          sa.Column("id", sa.Integer(), nullable=False),
          sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
          sa.Column("topic", sa.String(255), nullable=False),
          sa.Column("key", sa.LargeBinary(), nullable=False),
          sa.Column("value", sa.LargeBinary(), nullable=False),
          sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
          sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
          indexes=(("published_at",),))
    table("comparison_requests",
          sa.Column("request_id", sa.String(64), nullable=False),
          sa.Column("department", sa.String(32), nullable=False),
          sa.Column("case_id", sa.Integer(), nullable=True),
          sa.Column("requested_by", sa.String(64), nullable=False),
          sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
          sa.Column("persons", sa.Integer(), nullable=False),
          sa.PrimaryKeyConstraint("request_id", name=op.f("pk_comparison_requests")),
          sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_comparison_requests_case_id")),
          indexes=(("department",), ("case_id",)))
    table("comparison_targets",
          sa.Column("id", sa.Integer(), nullable=False),
          sa.Column("request_id", sa.String(64), nullable=False),
          sa.Column("person_key", sa.String(64), nullable=False),
          sa.Column("household_id", sa.String(64), nullable=False),
          sa.PrimaryKeyConstraint("id", name=op.f("pk_comparison_targets")),
          sa.ForeignKeyConstraint(["request_id"], ["comparison_requests.request_id"],
                                  name=op.f("fk_comparison_targets_request_id")),
          indexes=(("request_id",), ("household_id",)))
    table("comparison_answers",
          sa.Column("id", sa.Integer(), nullable=False),
          sa.Column("event_id", sa.String(64), nullable=False),
          sa.Column("request_id", sa.String(64), nullable=False),
          sa.Column("department", sa.String(32), nullable=False),
          sa.Column("person_key", sa.String(64), nullable=False),
          sa.Column("found", sa.Boolean(), nullable=False),
          sa.Column("summary", sa.Text(), nullable=False),
          sa.Column("records", sa.JSON(), nullable=False),
          sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
          sa.PrimaryKeyConstraint("id", name=op.f("pk_comparison_answers")),
          sa.UniqueConstraint("event_id", name=op.f("uq_comparison_answers_event_id")),
          indexes=(("request_id",), ("person_key",)))


def _link_evidence(dialect: str, has_column: bool) -> None:
    if has_column:
        return
    sqlite = dialect == "sqlite"
    with op.batch_alter_table("evidence", recreate="always" if sqlite else "auto",
                              copy_from=_evidence(linked=False) if sqlite else None) as batch:
        batch.add_column(sa.Column("case_alert_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_evidence_case_alert_id", "case_alerts", ["case_alert_id"], ["id"])
        batch.create_index("ix_evidence_case_alert_id", ["case_alert_id"])


def _alerts_from_evidence() -> None:
    meta = sa.MetaData()
    cases = sa.Table("cases", meta, sa.Column("id", sa.Integer), sa.Column("subject_id", sa.String),
                     sa.Column("status", sa.String), sa.Column("updated_at", sa.DateTime(timezone=True)))
    evidence = sa.Table("evidence", meta, sa.Column("case_id", sa.Integer), sa.Column("rule", sa.String),
                        sa.Column("severity", sa.String), sa.Column("received_at", sa.DateTime(timezone=True)),
                        sa.Column("case_alert_id", sa.Integer))
    alerts = sa.Table("case_alerts", meta, *(sa.Column(name) for name in (
        "id", "case_id", "household_id", "rule", "status", "severity", "opened_at", "updated_at", "resolved_by",
        "resolved_at")))
    rank = sa.func.max(sa.case({"HIGH": 2, "MEDIUM": 1}, value=evidence.c.severity, else_=0))
    closed = cases.c.status != "OPEN"
    query = (
        sa.select(evidence.c.case_id, cases.c.subject_id, evidence.c.rule,
                  sa.case((closed, "RESOLVED"), else_="OPEN"),
                  sa.case((rank == 2, "HIGH"), (rank == 1, "MEDIUM"), else_="LOW"),
                  sa.func.min(evidence.c.received_at), sa.func.max(evidence.c.received_at),
                  sa.case((closed, MIGRATED_BY), else_=None), sa.case((closed, cases.c.updated_at), else_=None))
        .select_from(evidence.join(cases, evidence.c.case_id == cases.c.id))
        .where(~sa.exists().where(alerts.c.case_id == evidence.c.case_id, alerts.c.rule == evidence.c.rule))
        .group_by(evidence.c.case_id, cases.c.subject_id, evidence.c.rule, cases.c.status, cases.c.updated_at))
    op.execute(alerts.insert().from_select(
        ["case_id", "household_id", "rule", "status", "severity", "opened_at", "updated_at", "resolved_by",
         "resolved_at"], query))
    # each (case, rule) has exactly one alert now
    alert_of = (sa.select(alerts.c.id).where(alerts.c.case_id == evidence.c.case_id, alerts.c.rule == evidence.c.rule)
                .order_by(alerts.c.id.desc()).limit(1).scalar_subquery())
    op.execute(evidence.update().where(evidence.c.case_alert_id.is_(None)).values(case_alert_id=alert_of))


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    existing = set(inspector.get_table_names())
    _create_tables(existing, bind.dialect.name)
    has_column = any(c["name"] == "case_alert_id" for c in inspector.get_columns("evidence"))
    _link_evidence(bind.dialect.name, has_column)
    _alerts_from_evidence()


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table("evidence", recreate="always" if sqlite else "auto",
                              copy_from=_evidence(linked=True) if sqlite else None) as batch:
        batch.drop_index("ix_evidence_case_alert_id")
        batch.drop_constraint("fk_evidence_case_alert_id", type_="foreignkey")
        batch.drop_column("case_alert_id")
    for name in ("comparison_answers", "comparison_targets", "comparison_requests", "outbox", "audit_log", "users",
                 "members", "households", "case_history", "case_alerts"):
        op.drop_table(name)
