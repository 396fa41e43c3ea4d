"""The case operations (services.cases.store.Cases) on a real SQLite file in tmp_path.

The behaviour tests shared with PostgreSQL live in tests/cases_behaviour.py and are imported below by name, so
pytest collects them here too, against this module's `store` fixture.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.casedb.database import open_database
from services.casedb.store import CaseStore

pytest.register_assert_rewrite("tests.cases_behaviour")  # before the import below: pytest's detailed asserts

# The shared tests are imported to be collected here, on SQLite (F401: nothing else uses them).
from tests.cases_behaviour import (  # noqa: E402, F401
    test_a_household_not_imported_and_a_village_case,
    test_a_roster_import_after_label_keeps_the_decided_status_unless_the_export_changed,
    test_acknowledge_and_resolve_a_case,
    test_data_compare_waits_for_the_departments_unless_a_county_user_overrides,
    test_every_view_and_action_is_in_the_audit_log,
    test_five_day_notice_and_authorisation_in_the_store,
    test_inclusion_to_label_then_risk_elimination_then_re_entry,
    test_label_keeps_a_focus_category_or_takes_the_one_given,
    test_label_takes_the_category_given,
    test_nominate_notice_refused_without_labour_or_with_an_open_high_alert,
    test_publish_status_queues_each_labelled_households_latest_decision,
    test_roles_and_regions_are_refused_where_they_must_be,
    test_roster_import_keeps_names_in_the_case_db_and_upserts,
    test_steps_of_cases_for_the_listing,
    test_users_passwords_and_regions,
    test_worklists_are_scoped_to_the_region_and_filtered,
    world,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    s = open_database(f"sqlite:///{tmp_path / 'cases.db'}")
    assert s.engine.dialect.name == "sqlite"
    yield s
    s.close()
