"""The suite's marks (tests/conftest.py, docs/testing.md "Marks"): fast, integration and slow, by directory."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.conftest import TESTS, applies, mark_for

ROOT = TESTS.parent


@pytest.mark.parametrize(("path", "marked", "mark"), [
    ("unit/test_rules.py", set(), "fast"),
    ("unit/test_streaming.py", {"slow"}, None),  # a slow unit test is not fast
    ("unit/test_x.py", {"integration"}, None),  # nor one marked integration by hand
    ("integration/test_pipeline.py", set(), "integration"),
    ("integration/test_pipeline.py", {"integration"}, "integration"),
    ("integration/test_monitor_operations.py", {"slow", "integration"}, "integration"),  # slow and integration
    ("e2e/test_case_cli.py", set(), "integration"),
    ("casedb_behaviour.py", set(), None),  # shared behaviour: marked where a unit or integration module runs it
])
def test_each_directory_gives_its_mark(path: str, marked: set[str], mark: str | None) -> None:
    assert mark_for(TESTS / path, marked) == mark


def test_a_path_outside_the_tests_gets_no_mark(tmp_path: Path) -> None:
    assert mark_for(tmp_path / "test_elsewhere.py", set()) is None


def test_the_marks_are_declared_each_with_what_it_means() -> None:
    markers = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"][
        "markers"]
    declared = {m.split(":", 1)[0]: m.split(":", 1)[1].strip() for m in markers}
    assert set(declared) >= {"fast", "integration", "slow"}
    assert all(len(declared[name]) > 20 for name in ("fast", "integration", "slow"))


def test_the_unit_tests_themselves_are_fast(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("fast") is not None
    assert request.node.get_closest_marker("integration") is None


def test_a_slow_mark_with_conditions_applies_to_the_matching_cases_only() -> None:
    on_disk = pytest.mark.slow(store="rocksdb").mark
    assert applies(on_disk, {"store": "rocksdb"})
    assert not applies(on_disk, {"store": "memory"}) and not applies(on_disk, {})
    assert applies(pytest.mark.slow.mark, {}) and applies(pytest.mark.slow.mark, {"store": "memory"})
