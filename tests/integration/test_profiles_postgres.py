"""The household profile in the case DB and the risk-elimination checks (P70) on a real PostgreSQL server: the
behaviours shared with SQLite (tests/profiles_behaviour.py, imported by name), plus writers racing to store the
profiles of one household: the newest one stays, whatever the order of their commits.

The server is scripts/postgres.sh's private cluster, as for tests/integration/test_cases_postgres.py (its `pg_url`
fixture is reused); the tables live in a schema of their own (`profiles_p70`), dropped and made again per test.
"""
from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Iterator

import pytest

from services.casedb.database import open_database
from services.casedb.store import CaseStore
from services.cases.profiles import record_profiles
from tests.integration.test_cases_postgres import fresh_schema, pg_url, store_in  # noqa: F401 (pg_url: the fixture)

pytest.register_assert_rewrite("tests.profiles_behaviour")  # before the import below: pytest's detailed asserts

# The shared tests are imported to be collected here, on PostgreSQL (F401: nothing else uses them).
from tests.cases_behaviour import HA, World, world  # noqa: E402, F401
from tests.profiles_behaviour import (  # noqa: E402, F401
    T1,
    profile,
    stored,
    test_nominate_notice_holds_the_income_against_the_county_line,
    test_nominate_notice_waits_for_housing_water_and_insurance,
    test_profiles_are_kept_in_order_of_their_own_clock,
    test_the_household_profile_view_is_scoped_and_audited,
)

pytestmark = pytest.mark.integration

SCHEMA = "profiles_p70"


@pytest.fixture
def db_url(pg_url: str) -> str:  # noqa: F811
    return fresh_schema(pg_url, SCHEMA)


@pytest.fixture
def store(db_url: str) -> Iterator[CaseStore]:
    yield from store_in(db_url, SCHEMA)


def test_writers_racing_on_one_household_leave_the_newest_profile(world: World, db_url: str) -> None:  # noqa: F811
    """Eight writers (each its own engine) store eight versions of HA's profile at the same moment, in a random
    order: the compare-and-set keeps the newest; none of them fails."""
    versions = [T1 + dt.timedelta(minutes=i) for i in range(8)]
    random.Random(11).shuffle(versions)
    stores = [open_database(db_url) for _ in versions]
    barrier = threading.Barrier(len(versions))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def run(s: CaseStore, updated: dt.datetime) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes.extend(record_profiles(s, [(HA, profile(HA, updated=updated, income=f"{9000 + updated.minute}"))]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s, u)) for s, u in zip(stores, versions)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for s in stores:
            s.close()
    assert errors == [] and len(outcomes) == len(versions)
    assert outcomes.count("stored") == 1 and set(outcomes) <= {"stored", "replaced", "stale"}
    row = stored(world, HA)
    assert row is not None and row.updated_at == max(versions) and str(row.income_per_capita) == "9007.00"
