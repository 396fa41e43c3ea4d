"""The household profile in the case DB and the risk-elimination checks (P70) on a real SQLite file in tmp_path: the
behaviour tests shared with PostgreSQL (tests/profiles_behaviour.py), imported by name."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from services.casedb.database import open_database
from services.casedb.store import CaseStore

pytest.register_assert_rewrite("tests.profiles_behaviour")  # before the import below: pytest's detailed asserts

# The shared tests are imported to be collected here, on SQLite (F401: nothing else uses them).
from tests.cases_behaviour import world  # noqa: E402, F401
from tests.profiles_behaviour import (  # noqa: E402, F401
    test_nominate_notice_holds_the_income_against_the_county_line,
    test_nominate_notice_waits_for_housing_water_and_insurance,
    test_profiles_are_kept_in_order_of_their_own_clock,
    test_the_household_profile_view_is_scoped_and_audited,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CaseStore]:
    s = open_database(f"sqlite:///{tmp_path / 'cases.db'}")
    assert s.engine.dialect.name == "sqlite"
    yield s
    s.close()
