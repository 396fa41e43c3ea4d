"""The suite's three marks, given by directory (docs/testing.md, "Marks"):

    fast          tests/unit/ except what is marked slow: no network, no child service; the set runs in under a minute
    integration   tests/integration/ and tests/e2e/: real brokers, PostgreSQL, the browser, the installed command
    slow          marked by hand on a test that takes minutes; never also fast (nor is a unit test marked
                  integration by hand: one that starts child processes or servers)

`pytest -m fast` is what a developer runs between edits; `.ci/run` runs everything.
"""
from __future__ import annotations

from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
FAST_DIRS = ("unit",)
INTEGRATION_DIRS = ("integration", "e2e")


def mark_for(path: Path, marked: set[str]) -> str | None:
    """The mark a test in `path` gets from its directory (None: none); `marked`: the marks it has already. A unit
    test marked slow or integration is not fast."""
    try:
        top = path.resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):
        return None
    if top in INTEGRATION_DIRS:
        return "integration"
    if top in FAST_DIRS and not marked & {"slow", "integration"}:
        return "fast"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marked = {m.name for m in item.iter_markers()}
        mark = mark_for(item.path, marked)
        if mark is not None and mark not in marked:
            item.add_marker(mark)
