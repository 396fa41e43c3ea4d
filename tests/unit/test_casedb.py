"""The case database (services.casedb.store) on a real SQLite file in tmp_path.

The behaviour tests shared with PostgreSQL live in tests/casedb_behaviour.py and are imported below by name, so
pytest collects them here too, against this module's `store` fixture; the tests after them are SQLite's own.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from schemas.errors import ConfigError, PovwatchError
from services.casedb.database import open_database
from services.casedb.store import CaseStore, RecordResult

pytest.register_assert_rewrite("tests.casedb_behaviour")  # before the import below: pytest's detailed asserts

# The shared tests are imported to be collected here, on SQLite (F401: nothing else uses them).
from tests.casedb_behaviour import (  # noqa: E402, F401
    HH1,
    VILLAGE,
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

pytest.register_assert_rewrite("tests.recording_behaviour")

# a poll batch recorded as its messages one at a time (services/casedb/recording.py), shared with the other backend
from tests.recording_behaviour import (  # noqa: E402, F401
    test_a_mixed_batch_records_what_its_messages_one_at_a_time_record,
    test_any_split_of_a_batch_records_the_same,
)

pytest.register_assert_rewrite("tests.evidence_behaviour")

# issue #11's case DB side (one fact, one alert; townships; deadlines), shared with PostgreSQL the same way
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


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """The URL of a database that does not exist yet (open_database makes the directories and the file)."""
    return f"sqlite:///{tmp_path / 'nested' / 'dir' / 'cases.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[CaseStore]:
    s = open_database(db_url)
    assert s.engine.dialect.name == "sqlite"
    yield s
    s.close()


def test_open_case_index_is_really_partial(store: CaseStore) -> None:
    with store.engine.connect() as conn:
        sql = conn.scalar(text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'uq_cases_open_subject'"))
    assert sql is not None and "UNIQUE" in sql and "WHERE" in sql and "OPEN" in sql

    error = second_open_case_error(store)
    assert "UNIQUE constraint failed: cases.subject_kind, cases.household_or_region" in error


def test_reopening_the_file_keeps_the_data(db_url: str) -> None:
    with open_database(db_url) as first:
        case_id = first.record_household_alert(household_alert("a1")).case_id
    with open_database(db_url) as again:
        assert again.counts() == {"cases_open": 1, "evidence": 1}
        assert again.record_household_alert(household_alert("a1")) == RecordResult(case_id, False, True)
        assert again.record_household_alert(household_alert("a2")).case_id == case_id


def test_in_memory_sqlite_works() -> None:
    with open_database("sqlite://") as mem:
        mem.record_household_alert(household_alert("a1"))
        assert mem.counts() == {"cases_open": 1, "evidence": 1}


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://host/x", "sqlite:///"])
def test_bad_url_is_a_config_error(url: str, tmp_path: Path) -> None:
    if url == "sqlite:///":
        url = f"sqlite:///{tmp_path}"                    # a directory, not a database file
    with pytest.raises(ConfigError) as info:
        open_database(url)
    message = str(info.value)
    assert "POVWATCH_CASE_DB" in message and "\n" not in message
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, PovwatchError)


def test_unreachable_server_is_a_povwatch_error() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(PovwatchError, match="unreachable") as info:
        open_database("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2")
    assert "secret" not in str(info.value)
