"""The suite's three marks, given by directory (docs/testing.md, "Marks"):

    fast          tests/unit/ except what is marked slow: no network, no child service; the set runs in under a minute
    integration   tests/integration/ and tests/e2e/: real brokers, PostgreSQL, the browser, the installed command
    slow          marked by hand on a test that takes minutes; never also fast (nor is a unit test marked
                  integration by hand: one that starts child processes or servers)

`pytest -m fast` is what a developer runs between edits; `.ci/run` runs everything.

`@pytest.mark.slow(store="rocksdb")` on a test function marks only its parametrised cases whose parameters match
(here: the disk store's run of a test that also runs on the in-memory one); the other cases stay fast.
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


def applies(mark: pytest.Mark, params: dict[str, object]) -> bool:
    """A mark's keyword arguments as conditions on the case's parameters: all must match (none: always)."""
    return all(params.get(name) == value for name, value in mark.kwargs.items())


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        params = item.callspec.params if isinstance(item, pytest.Function) and hasattr(item, "callspec") else {}
        for mark in [m for m in item.iter_markers("slow") if not applies(m, params)]:
            _drop(item, mark)
        marked = {m.name for m in item.iter_markers()}
        mark = mark_for(item.path, marked)
        if mark is not None and mark not in marked:
            item.add_marker(mark)


def _drop(item: pytest.Item, mark: pytest.Mark) -> None:
    """Take a conditional mark that does not apply off the case. Only a test function's own marks are its case's
    alone (a module's or class's are shared by its other cases), so a condition is refused anywhere else."""
    if not any(m is mark for m in item.own_markers):
        raise pytest.UsageError(f"{item.nodeid}: a slow mark with conditions ({mark.kwargs}) goes on a test function")
    item.own_markers[:] = [m for m in item.own_markers if m is not mark]
