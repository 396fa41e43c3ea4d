"""The case operations (services.cases.store.Cases) on a real PostgreSQL server: the behaviours shared with SQLite
(tests/cases_behaviour.py, imported by name), plus two workers taking the same step at the same moment.

The server is the project's private cluster of `scripts/postgres.sh` (on POVWATCH_PG_PORT, or on the port it is
already running on), started if needed and stopped at the end only if this module started it. The tables live in
a schema of their own (`cases_wf`, dropped and recreated before each test, reached through the connection's
search_path), so this module never touches what another test module keeps in the same database. If the script
fails, the tests fail with its output; they never skip.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from services.casedb.database import open_database
from services.casedb.errors import StepRefused
from services.casedb.store import CaseStore

pytest.register_assert_rewrite("tests.cases_behaviour")  # before the import below: pytest's detailed asserts

# The shared tests are imported to be collected here, on PostgreSQL (F401: nothing else uses them).
from tests.cases_behaviour import (  # noqa: E402, F401
    HA,
    V1,
    World,
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

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
SCHEMA = "cases_wf"
FIRST_START_TIMEOUT = 600  # a first start installs the server package


def _script(command: str, timeout: float, port: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **({"POVWATCH_PG_PORT": port} if port else {}))
    try:
        return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/postgres.sh {command} did not finish within {timeout:.0f} s", pytrace=False)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    status = _script("status", 60)
    running = re.search(r"running on 127\.0\.0\.1:(\d+)", status.stdout) if status.returncode == 0 else None
    started = _script("start", FIRST_START_TIMEOUT, port=running.group(1) if running else None)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines or not lines[-1].startswith("postgresql+psycopg://"):
        pytest.fail(f"scripts/postgres.sh start failed (exit {started.returncode})\n"
                    f"--- stdout\n{started.stdout}--- stderr\n{started.stderr}", pytrace=False)
    try:
        yield lines[-1]
    finally:
        if running is None:
            stopped = _script("stop", 120)
            assert stopped.returncode == 0, f"scripts/postgres.sh stop failed:\n{stopped.stdout}{stopped.stderr}"


def fresh_schema(pg_url: str, schema: str) -> str:
    """The URL of an empty case DB in `schema` (dropped and made again): each module's tables apart."""
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    finally:
        engine.dispose()
    return f"{pg_url}?options=-csearch_path%3D{schema}"


def store_in(db_url: str, schema: str) -> Iterator[CaseStore]:
    """The case DB of `db_url`, checked to be PostgreSQL and to live in `schema`; closed after use."""
    s = open_database(db_url)
    assert s.engine.dialect.name == "postgresql"
    with s.engine.connect() as conn:
        assert conn.scalar(text("SELECT current_schema()")) == schema
    yield s
    s.close()


@pytest.fixture
def db_url(pg_url: str) -> str:
    """The URL of an empty case DB in the schema of this module (dropped and made again)."""
    return fresh_schema(pg_url, SCHEMA)


@pytest.fixture
def store(db_url: str) -> Iterator[CaseStore]:
    yield from store_in(db_url, SCHEMA)


def test_two_workers_take_the_same_step_at_once_and_one_wins(world: World, db_url: str) -> None:  # noqa: F811
    """Two processes' worth of Cases take PUBLIC_NOTICE on the same case at the same moment: the case row is locked
    by the first statement of the step's transaction, so exactly one succeeds and the other is refused by the
    table (PUBLIC_NOTICE is no longer next), and one STEP row is written."""
    case_id = world.alert(HA, V1)
    world.cases.advance("vil1", case_id, "APPLY", on=dt.date(2024, 7, 1), authorised=True)
    stores = [open_database(db_url) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def run(store: CaseStore) -> None:
        from services.cases.store import Cases

        cases = Cases(store, clock=lambda: world.now)
        barrier.wait(timeout=30)
        try:
            cases.advance("vil1", case_id, "PUBLIC_NOTICE", on=dt.date(2024, 7, 2))
            outcomes.append("done")
        except StepRefused as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for s in stores:
            s.close()
    refused = [o for o in outcomes if o != "done"]
    assert outcomes.count("done") == 1 and len(refused) == 1, outcomes
    assert refused[0].startswith(f"case {case_id}: PUBLIC_NOTICE is not allowed now (last step: PUBLIC_NOTICE)")
    assert [s for k, s, _, _ in world.history(case_id) if k == "STEP"] == ["APPLY", "PUBLIC_NOTICE"]
