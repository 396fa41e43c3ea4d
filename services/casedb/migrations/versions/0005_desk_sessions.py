"""The desk's sessions in the case DB (issue #13 item 6): `desk_sessions`, one row per logged-in session - the
SHA-256 of its id, the user's name, when it was made and when it expires - so that a logout, a password change
or `povwatch users disable` ends sessions on every desk process and across restarts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    bounds = [sa.CheckConstraint(f"length({column}) <= 64", name=op.f(f"ck_desk_sessions_{column}_at_most_64"))
              for column in ("sid_hash", "user_name")] if op.get_bind().dialect.name == "sqlite" else []
    op.create_table(
        "desk_sessions",
        sa.Column("sid_hash", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sid_hash", name=op.f("pk_desk_sessions")),
        *bounds)
    op.create_index(op.f("ix_desk_sessions_user_name"), "desk_sessions", ["user_name"])
    op.create_index(op.f("ix_desk_sessions_expires_at"), "desk_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_desk_sessions_expires_at"), table_name="desk_sessions")
    op.drop_index(op.f("ix_desk_sessions_user_name"), table_name="desk_sessions")
    op.drop_table("desk_sessions")
