"""The case DB's schema migrations on SQLite: the shared migration tests (tests/casedb_migrations.py), an upgrade
from #2's DDL verbatim, and `alembic check`: the models (services/casedb/store.py, services/casedb/models.py) and
the migrations agree - the autogenerate diff is empty, and the CHECK constraints and partial indexes, which
autogenerate does not compare, are the same as `create_all` makes."""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, create_engine, inspect

from services.casedb.database import open_database
from services.casedb.models import Base

pytest.register_assert_rewrite("tests.casedb_migrations")  # before the import below: pytest's detailed asserts

from tests.casedb_migrations import (  # noqa: E402, F401
    check_upgraded_issue2_db,
    fill_issue2_db,
    test_0004_names_the_subject_column_and_gives_village_codes_one_width,
    test_a_db_of_issue_2_is_upgraded_keeping_its_cases_and_evidence,
    test_a_revision_from_a_newer_povwatch_is_refused_in_one_line,
    test_an_empty_db_goes_to_head_and_reopening_keeps_it,
    test_downgrade_to_issue_2_and_upgrade_again,
    test_dropped_tables_are_built_again,
    test_processes_opening_a_new_database_at_once_upgrade_it_once,
)

# What `Base.metadata.create_all` made at commit d0a6d84 (issue #2), as SQLite stored it.
ISSUE2_DDL = """
CREATE TABLE cases (
	id INTEGER NOT NULL,
	subject_kind VARCHAR(16) NOT NULL,
	subject_id VARCHAR(64) NOT NULL,
	village_code VARCHAR(32) NOT NULL,
	status VARCHAR(8) NOT NULL,
	max_severity VARCHAR(8) NOT NULL,
	opened_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	CONSTRAINT pk_cases PRIMARY KEY (id),
	CONSTRAINT ck_cases_subject_kind CHECK (subject_kind IN ('household', 'village')),
	CONSTRAINT ck_cases_status CHECK (status IN ('OPEN', 'CLOSED')),
	CONSTRAINT ck_cases_max_severity CHECK (max_severity IN ('LOW', 'MEDIUM', 'HIGH')),
	CONSTRAINT ck_cases_subject_id_at_most_64 CHECK (length(subject_id) <= 64),
	CONSTRAINT ck_cases_village_code_at_most_32 CHECK (length(village_code) <= 32)
);
CREATE INDEX ix_cases_village_code ON cases (village_code);
CREATE INDEX ix_cases_subject_id ON cases (subject_id);
CREATE UNIQUE INDEX uq_cases_open_subject ON cases (subject_kind, subject_id) WHERE status = 'OPEN';
CREATE TABLE evidence (
	id INTEGER NOT NULL,
	alert_id VARCHAR(128) NOT NULL,
	case_id INTEGER NOT NULL,
	rule VARCHAR(32) NOT NULL,
	severity VARCHAR(8) NOT NULL,
	reason TEXT NOT NULL,
	event_ids JSON NOT NULL,
	household_ids JSON NOT NULL,
	occurred_at DATE NOT NULL,
	raised_at DATETIME NOT NULL,
	received_at DATETIME NOT NULL,
	source_topic VARCHAR(255) NOT NULL,
	CONSTRAINT pk_evidence PRIMARY KEY (id),
	CONSTRAINT ck_evidence_severity CHECK (severity IN ('LOW', 'MEDIUM', 'HIGH')),
	CONSTRAINT ck_evidence_alert_id_at_most_128 CHECK (length(alert_id) <= 128),
	CONSTRAINT ck_evidence_source_topic_at_most_255 CHECK (length(source_topic) <= 255),
	CONSTRAINT uq_evidence_alert_id UNIQUE (alert_id),
	CONSTRAINT fk_evidence_case_id FOREIGN KEY(case_id) REFERENCES cases (id)
);
CREATE INDEX ix_evidence_case_id ON evidence (case_id);
"""


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cases.db'}"


def _diff(url: str, metadata: MetaData) -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                         metadata))
    finally:
        engine.dispose()


def test_models_and_migrations_agree(db_url: str) -> None:
    """`alembic check`: a database built by the migrations alone has exactly the models' tables and columns."""
    open_database(db_url).close()
    assert _diff(db_url, Base.metadata) == []
    # the comparison sees a difference when there is one
    changed = MetaData()
    for table in Base.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["case_alerts"].append_column(Column("not_migrated", Integer))
    assert [d[0] for d in _diff(db_url, changed)] == ["add_column"]


def _shape(url: str) -> dict[str, Any]:
    """What autogenerate leaves out: CHECK constraints and the WHERE of partial indexes, table by table."""
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        return {table: (sorted((c["name"], c["sqltext"]) for c in inspector.get_check_constraints(table)),
                        sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]),
                                str(i.get("dialect_options", {}).get("sqlite_where")))
                               for i in inspector.get_indexes(table)),
                        sorted((f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                               for f in inspector.get_foreign_keys(table)))
                for table in inspector.get_table_names() if table != "alembic_version"}
    finally:
        engine.dispose()


def test_migrations_make_what_create_all_makes(tmp_path: Path) -> None:
    migrated, created = f"sqlite:///{tmp_path / 'migrated.db'}", f"sqlite:///{tmp_path / 'created.db'}"
    open_database(migrated).close()
    engine = create_engine(created)
    Base.metadata.create_all(engine)
    engine.dispose()
    assert _shape(migrated) == _shape(created)
    assert "status != 'RESOLVED'" in str(_shape(migrated)["case_alerts"][1])


def test_upgrade_from_the_ddl_of_issue_2_verbatim(db_url: str, tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "cases.db") as connection:
        connection.executescript(ISSUE2_DDL)
    connection.close()
    fill_issue2_db(db_url)
    with open_database(db_url) as store:
        check_upgraded_issue2_db(store)

