"""The web desk's case-DB behaviour on the real PostgreSQL of `scripts/postgres.sh` (POVWATCH_PG_PORT): the
TestClient tests of tests/unit/test_desk_app.py and tests/unit/test_desk_hardening.py (sessions in the case DB across
two desk instances and a restart, ids beyond INTEGER) that read and write the case DB, imported by name so pytest
runs them here against this module's `store` (a PostgreSQL case DB, emptied and prepared for each test)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from services.casedb.database import open_database
from services.casedb.models import Base
from services.casedb.store import CaseStore
from tests.desk_world import World, prepare

# F401: the fixtures and tests below are imported to be collected (and resolved) here, on PostgreSQL
from tests.integration.test_casedb_postgres import pg_url  # noqa: F401
from tests.unit.test_desk_app import (  # noqa: F401
    cases,
    client,
    test_a_post_without_the_sessions_token_is_refused,
    test_a_step_button_posts_and_advances,
    test_a_user_sees_only_their_region,
    test_acknowledge_and_resolve,
    test_another_regions_case_is_not_found,
    test_data_compare_with_a_department_not_answered,
    test_every_view_of_a_case_is_audited,
    test_log_in_and_out,
    test_the_notice_must_stand_five_days,
    test_the_wrong_role_is_refused_with_its_reason,
    test_worklist_filters,
)
from tests.unit.test_desk_hardening import (  # noqa: F401
    test_a_password_change_ends_every_session_of_the_user,
    test_a_session_survives_a_restart,
    test_a_step_cannot_be_dated_before_the_case_was_opened,
    test_a_stolen_cookie_is_refused_after_logout_and_restart,
    test_audit_rows_for_unknown_names_are_bounded_per_minute,
    test_disabling_a_user_ends_their_sessions_and_enabling_needs_a_new_log_in,
    test_ids_beyond_the_databases_range_are_404,
    test_logout_on_one_replica_ends_the_session_on_the_other,
    test_sessions_are_stored_hashed,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_store(pg_url: str, tmp_path: Path) -> Iterator[tuple[CaseStore, World]]:  # noqa: F811

    engine = create_engine(pg_url)
    try:
        Base.metadata.drop_all(engine)
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()
    store = open_database(pg_url)
    assert store.engine.dialect.name == "postgresql"
    try:
        yield store, prepare(store, tmp_path)
    finally:
        store.close()


@pytest.fixture
def store(pg_store: tuple[CaseStore, World]) -> CaseStore:
    return pg_store[0]


@pytest.fixture
def world(pg_store: tuple[CaseStore, World]) -> World:
    return pg_store[1]
