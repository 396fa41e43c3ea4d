"""The case DB on a real PostgreSQL server: the behaviours shared with SQLite, plus real concurrent writers.

The shared behaviour tests live in tests/casedb_behaviour.py and are imported below by name, so pytest collects
them here too, against this module's `store` fixture; the tests after them are PostgreSQL's own.

The server is the project's own private cluster, started by `scripts/postgres.sh start` (which installs Debian's
`postgresql` package on first use, so the first run may take a few minutes) and stopped again at the end of the
module - unless it was already running before, then it is left as it was. If the script fails, the tests fail
with its output; they never skip. Every test starts from empty tables (dropped and recreated), so reruns are clean.
"""
from __future__ import annotations

import random
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from schemas.alerts import severity_rank
from services.casedb.database import open_database
from services.casedb.store import CaseStore, RecordResult

pytest.register_assert_rewrite("tests.casedb_behaviour", "tests.casedb_migrations",
                               "tests.evidence_behaviour", "tests.recording_behaviour")  # before the imports below

# The shared tests are imported to be collected here, on PostgreSQL (F401: nothing else uses them).
from tests.casedb_behaviour import (  # noqa: E402, F401
    HH1,
    VILLAGE,
    escalations,
    household_alert,
    second_open_case_error,
    test_a_resolved_alert_or_a_closed_case_starts_afresh,
    test_an_acknowledged_alert_that_escalates_is_open_again,
    test_batch_with_duplicates_inside_it,
    test_cases_json_shows_the_alerts_with_their_status,
    test_escalation_raises_the_alert_and_the_case_and_says_so,
    test_evidence_alert_id_is_unique_in_the_db,
    test_evidence_attaches_to_the_live_alert_of_its_rule,
    test_household_alerts_share_one_case_and_redelivery_is_a_duplicate,
    test_listing_and_rendering,
    test_lost_race_on_the_alert_id_reports_a_duplicate,
    test_lost_race_on_the_open_case_is_retried,
    test_malformed_alert_is_a_schema_error,
    test_max_severity_rises_and_never_drops,
    test_one_live_alert_per_case_and_rule_in_the_db,
    test_partial_unique_index_allows_one_open_case_per_subject,
    test_redelivered_alert_changes_nothing,
    test_regional_alert_opens_a_village_case,
    test_report_rows_from_the_case_db,
)

# The migration tests too (tests/casedb_migrations.py): from issue #2's schema, on PostgreSQL.
from tests.casedb_migrations import (  # noqa: E402, F401
    test_0004_names_the_subject_column_and_gives_village_codes_one_width,
    test_a_db_of_issue_2_is_upgraded_keeping_its_cases_and_evidence,
    test_a_revision_from_a_newer_povwatch_is_refused_in_one_line,
    test_an_empty_db_goes_to_head_and_reopening_keeps_it,
    test_downgrade_to_issue_2_and_upgrade_again,
    test_dropped_tables_are_built_again,
    test_processes_opening_a_new_database_at_once_upgrade_it_once,
)

# Issue #11's case DB side (tests/evidence_behaviour.py): one fact, one alert; townships; deadlines.
from tests.evidence_behaviour import (  # noqa: E402, F401
    test_a_batch_carrying_an_alert_and_its_re_emission,
    test_a_higher_severity_re_emission_escalates_the_case_alert,
    test_a_rival_merging_other_news_first_loses_nothing,
    test_a_rival_merging_the_same_news_first_makes_ours_a_duplicate,
    test_a_second_department_corroborates_the_same_alert,
    test_a_worse_fact_after_the_case_was_closed_opens_a_case,
    test_alerts_without_topics_and_topics_filled_in_later,
    test_every_regional_rule_and_a_township_region,
    test_overdue_alerts_from_the_case_db,
    test_report_counts_township_cases_by_county,
    test_the_db_keeps_one_row_per_alert_and_event_and_bounds_it,
    test_township_cases_are_scoped_and_filtered_like_villages,
    test_worklist_and_case_page_show_what_is_overdue_to_the_region_only,
    test_worse_after_resolution_is_a_live_alert_again_but_corroboration_is_not,
    users,
)
from tests.integration.test_cases_postgres import fresh_schema  # noqa: E402
from tests.recording_behaviour import (  # noqa: E402, F401
    test_a_mixed_batch_records_what_its_messages_one_at_a_time_record,
    test_any_split_of_a_batch_records_the_same,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "postgres.sh"
FIRST_START_TIMEOUT = 600  # a first start installs the server package


def _script(command: str, timeout: float) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        def shown(out: bytes | str | None) -> str:
            return out.decode(errors="replace") if isinstance(out, bytes) else (out or "")
        pytest.fail(f"scripts/postgres.sh {command} did not finish within {timeout:.0f} s\n"
                    f"--- stdout\n{shown(exc.stdout)}--- stderr\n{shown(exc.stderr)}", pytrace=False)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    was_running = _script("status", 60).returncode == 0
    started = _script("start", FIRST_START_TIMEOUT)
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines or not lines[-1].startswith("postgresql+psycopg://"):
        pytest.fail(f"scripts/postgres.sh start failed (exit {started.returncode})\n"
                    f"--- stdout\n{started.stdout}--- stderr\n{started.stderr}", pytrace=False)
    try:
        yield lines[-1]
    finally:
        if not was_running:
            stopped = _script("stop", 120)
            assert stopped.returncode == 0, f"scripts/postgres.sh stop failed:\n{stopped.stdout}{stopped.stderr}"


@pytest.fixture
def db_url(pg_url: str) -> str:
    """The URL of an empty case DB in a schema of this module's own (dropped and made again): what other modules
    leave in the database (a SQL source's tables) is not in its way."""
    return fresh_schema(pg_url, "casedb_it")


@pytest.fixture
def store(db_url: str) -> Iterator[CaseStore]:
    s = open_database(db_url)
    assert s.engine.dialect.name == "postgresql"
    yield s
    s.close()


def test_open_case_index_is_really_partial(store: CaseStore) -> None:
    with store.engine.connect() as conn:
        indexdef = conn.scalar(text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_cases_open_subject'"))
    assert indexdef is not None and "UNIQUE" in indexdef and "WHERE" in indexdef and "OPEN" in indexdef

    error = second_open_case_error(store)
    assert "uq_cases_open_subject" in error                  # the conflict names the partial index


WRITERS = 8
ALERTS = [household_alert(f"c{i}", severity=("LOW", "MEDIUM", "HIGH")[i % 3]) for i in range(12)]


def _race(url: str, work: Any) -> list[Any]:
    """Run work(store, index) in WRITERS threads at once, each with its own CaseStore; return their results."""
    stores = [open_database(url) for _ in range(WRITERS)]
    for s in stores:                                     # connect before the start line, so all race at once
        with s.engine.connect():
            pass
    barrier = threading.Barrier(WRITERS)
    results: list[Any] = [None] * WRITERS
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(stores[index], index)
        except BaseException as exc:  # noqa: BLE001 - reported below, with the thread it came from
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), name=f"writer-{i}") for i in range(WRITERS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a writer hung"
        assert not errors, f"{len(errors)} writer(s) failed, first: {errors[0]!r}"
    finally:
        for s in stores:
            s.close()
    return results


def _check_one_case(url: str, per_writer: list[list[RecordResult]]) -> None:
    flat = [r for results in per_writer for r in results]
    assert len(flat) == WRITERS * len(ALERTS)
    assert len({r.case_id for r in flat}) == 1                       # everybody attached to the same case
    assert sum(r.case_opened for r in flat) == 1                     # which exactly one writer opened
    assert sum(not r.duplicate for r in flat) == len(ALERTS)         # each alert stored by exactly one writer
    with open_database(url) as check:
        assert check.counts() == {"cases_open": 1, "evidence": len(ALERTS)}
        [case] = check.list_cases()
        assert (case.household_or_region, case.max_severity) == (HH1, "HIGH")
        assert sorted(e.alert_id for e in case.evidence) == sorted(a["alert_id"] for a in ALERTS)
        [alert] = case.alerts                                        # one live alert of the rule, at the top
        assert (alert.status, alert.severity, sorted(alert.alert_ids)) == (
            "OPEN", "HIGH", sorted(a["alert_id"] for a in ALERTS))
        # each escalation recorded once, as a chain that only goes up: LOW -> MEDIUM -> HIGH at most
        notes = [note for _, _, note in escalations(check)]
        steps = [(n.split()[1], n.split()[3]) for n in notes if n is not None]
        assert len(steps) == len(notes) <= 2 and all(severity_rank(a) < severity_rank(b) for a, b in steps)
        assert all(steps[i][1] == steps[i + 1][0] for i in range(len(steps) - 1))
        assert not steps or steps[-1][1] == "HIGH"


def test_concurrent_writers_open_one_case_and_store_each_alert_once(db_url: str) -> None:
    """8 processes' worth of stores record the same alerts for one household at the same moment."""
    def work(store: CaseStore, index: int) -> list[RecordResult]:
        order = list(ALERTS)
        random.Random(index).shuffle(order)              # each writer in its own order
        return [store.record_household_alert(alert) for alert in order]

    _check_one_case(db_url, _race(db_url, work))


def test_concurrent_batches_open_one_case_and_store_each_alert_once(db_url: str) -> None:
    """The same, each writer recording all alerts in one transaction (record_batch), in its own order."""
    def work(store: CaseStore, index: int) -> list[RecordResult]:
        order = list(ALERTS)
        random.Random(100 + index).shuffle(order)
        return store.record_batch([("alerts.household", alert) for alert in order])

    _check_one_case(db_url, _race(db_url, work))


def test_concurrent_re_emissions_of_one_fact_merge_into_one_alert(db_url: str) -> None:
    """8 writers record the monitor's emissions of one death - public security's report, then health's, then the
    cadres' - each in its own order and at the same moment: one evidence row with every event once, at the highest
    severity, escalated at most once."""
    from tests.evidence_behaviour import CADRE, HEALTH, PS, death, stored_events

    emissions = [death(["ev-ps"], [PS], severity="MEDIUM"), death(["ev-ps", "ev-health"], [PS, HEALTH]),
                 death(["ev-ps", "ev-cadre"], [PS, CADRE], severity="MEDIUM"),
                 death(["ev-ps", "ev-health", "ev-cadre"], [PS, HEALTH, CADRE])]

    def work(store: CaseStore, index: int) -> list[RecordResult]:
        order = list(emissions)
        random.Random(200 + index).shuffle(order)
        return [store.record_household_alert(alert) for alert in order]

    flat = [r for results in _race(db_url, work) for r in results]
    assert sum(r.case_opened for r in flat) == 1 and len({r.case_id for r in flat}) == 1
    assert sum(r.events_added for r in flat) + sum(not r.duplicate and not r.updated for r in flat) <= 3
    with open_database(db_url) as check:
        assert check.counts() == {"cases_open": 1, "evidence": 1}
        [case] = check.list_cases()
        [evidence] = case.evidence
        assert sorted(evidence.event_ids) == ["ev-cadre", "ev-health", "ev-ps"]
        assert (evidence.severity, case.max_severity, case.alerts[0].severity) == ("HIGH", "HIGH", "HIGH")
        assert sorted(e for e, _, _ in stored_events(check, "death-1")) == ["ev-cadre", "ev-health", "ev-ps"]
        assert set(evidence.departments) == {"公安", "卫健", "基层干部排查"}
        assert len(escalations(check)) <= 1
