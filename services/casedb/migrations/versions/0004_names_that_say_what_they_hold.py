"""Names that say what they hold (issue #12): a case's subject column is `household_or_region` - the household id
of a household case, the region code of a village case - not `subject_id`; a village code has one width
everywhere (`REGION_CODE_WIDTH`, 12: cases.village_code was 32).

Schema: cases.subject_id renamed household_or_region (its index and the partial unique index of OPEN cases follow
it), cases.village_code VARCHAR(32) -> VARCHAR(12); on SQLite the CHECKs that bound them are renamed and narrowed
with them (the table is copied: SQLite alters tables by copying). The values are kept as they are (a village code
is 12 digits: nothing longer was ever stored).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_OLD, _NEW = "subject_id", "household_or_region"
_OLD_VILLAGE, _NEW_VILLAGE = 32, 12


def _cases(subject: str, village: int) -> sa.Table:
    """The cases table as SQLite holds it with the subject column named `subject` and villages `village` wide."""
    meta = sa.MetaData()
    return sa.Table(
        "cases", meta,
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column(subject, sa.String(64), nullable=False),
        sa.Column("village_code", sa.String(village), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("max_severity", sa.String(8), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_cases"),
        sa.CheckConstraint("subject_kind IN ('household', 'village')", name="ck_cases_subject_kind"),
        sa.CheckConstraint("status IN ('OPEN', 'CLOSED')", name="ck_cases_status"),
        sa.CheckConstraint("max_severity IN ('LOW', 'MEDIUM', 'HIGH')", name="ck_cases_max_severity"),
        sa.CheckConstraint(f"length({subject}) <= 64", name=f"ck_cases_{subject}_at_most_64"),
        sa.CheckConstraint(f"length(village_code) <= {village}", name=f"ck_cases_village_code_at_most_{village}"))


def _rename(old: str, new: str, old_village: int, new_village: int) -> None:
    if op.get_bind().dialect.name == "sqlite":
        for index in ("uq_cases_open_subject", f"ix_cases_{old}", "ix_cases_village_code"):
            op.drop_index(index, table_name="cases")  # the copy below keeps no index: all made again after it
        with op.batch_alter_table("cases", recreate="always", copy_from=_cases(old, old_village)) as batch:
            batch.drop_constraint(op.f(f"ck_cases_{old}_at_most_64"), type_="check")
            batch.drop_constraint(op.f(f"ck_cases_village_code_at_most_{old_village}"), type_="check")
            batch.alter_column(old, new_column_name=new, existing_type=sa.String(64), existing_nullable=False)
            batch.alter_column("village_code", type_=sa.String(new_village), existing_type=sa.String(old_village),
                               existing_nullable=False)
            batch.create_check_constraint(op.f(f"ck_cases_{new}_at_most_64"), f"length({new}) <= 64")
            batch.create_check_constraint(op.f(f"ck_cases_village_code_at_most_{new_village}"),
                                          f"length(village_code) <= {new_village}")
        op.create_index(f"ix_cases_{new}", "cases", [new])
        op.create_index("ix_cases_village_code", "cases", ["village_code"])
        op.create_index("uq_cases_open_subject", "cases", ["subject_kind", new], unique=True,
                        sqlite_where=sa.text("status = 'OPEN'"))
        return
    op.alter_column("cases", old, new_column_name=new)  # the indexes on it follow
    op.execute(f"ALTER INDEX ix_cases_{old} RENAME TO ix_cases_{new}")
    op.alter_column("cases", "village_code", type_=sa.String(new_village), existing_type=sa.String(old_village),
                    existing_nullable=False)


def upgrade() -> None:
    _rename(_OLD, _NEW, _OLD_VILLAGE, _NEW_VILLAGE)


def downgrade() -> None:
    _rename(_NEW, _OLD, _NEW_VILLAGE, _OLD_VILLAGE)
