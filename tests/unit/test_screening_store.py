"""集中排查 on a real SQLite case DB in tmp_path: the behaviours shared with PostgreSQL (tests/screening_behaviour.py,
imported by name so pytest collects them here against this module's `store`)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.casedb.database import open_database
from services.casedb.store import CaseStore

pytest.register_assert_rewrite("tests.screening_behaviour")  # before the import below: pytest's detailed asserts

# The shared tests are imported to be collected here, on SQLite (F401: nothing else uses them).
from tests.screening_behaviour import (  # noqa: E402, F401
    sworld,
    test_a_cadre_visit_closes_the_quarter_and_the_year_once,
    test_closing_by_hand_is_refused_outside_region_period_and_for_bad_notes,
    test_coverage_per_township,
    test_periods_not_begun_and_nobody_to_screen_are_refused,
    test_tasks_open_once_per_period,
    test_the_screening_commands,
    test_the_worklist_lists_the_users_open_tasks_of_the_running_periods,
    test_township_county_and_bureau_close_by_hand_a_village_user_cannot,
    test_visits_of_unknown_households_or_outside_every_period_close_nothing,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    s = open_database(f"sqlite:///{tmp_path / 'cases.db'}")
    assert s.engine.dialect.name == "sqlite"
    yield s
    s.close()
