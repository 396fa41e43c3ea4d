"""`povwatch roster load FILE`'s second half: the same file into the case DB's households and members.

The bureau's export is loaded once: the topics first (services.ingest.load_roster), then - when a case DB is
configured - its households and members (the names the desk shows; they never travel on a topic), through the same
import as `povwatch cases roster FILE` (services.cases.store.Cases.import_roster). That command stays, for a case
DB on another host than the one loading the topics.

"Configured": POVWATCH_CASE_DB is set (environment or Settings), or the default SQLite file (var/povwatch.db)
already exists; an unset setting with no default file means this host has no case DB, and none is created. When
the case DB is not configured or cannot be refreshed, `refresh` says why in ONE line, and how to do it later.

Exit codes of `roster load` (services.cli): 0 the topics are published (and the case DB refreshed, or none is
configured); 3 the topics are published but the configured case DB could not be refreshed; 2 nothing published
(bad file, Kafka unreachable, bad configuration).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plumbing.settings import Settings
from schemas.errors import PovwatchError

__all__ = ["CaseDbRefresh", "configured", "refresh", "PARTIAL_EXIT"]

PARTIAL_EXIT = 3  # the topics are published, the configured case DB was not refreshed
DEFAULT_SQLITE_PREFIX = "sqlite:///"


@dataclass(frozen=True)
class CaseDbRefresh:
    """What happened to the case DB: `counts` (a services.cases.views.RosterCounts) when refreshed, else `why`."""

    refreshed: bool
    failed: bool  # configured, and the refresh failed
    line: str  # the one line printed
    counts: Any = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"refreshed": self.refreshed, "failed": self.failed, "message": self.line}
        if self.counts is not None:
            out["counts"] = {k: v for k, v in dataclasses.asdict(self.counts).items() if k != "rejects"}
        return out


def configured(settings: Settings) -> bool:
    """POVWATCH_CASE_DB set, or the default SQLite case DB already there (see the module docstring)."""
    if "case_db" in settings.model_fields_set:
        return True
    url = settings.case_db
    return url.startswith(DEFAULT_SQLITE_PREFIX) and Path(url[len(DEFAULT_SQLITE_PREFIX):]).is_file()


def _later(file: Path) -> str:
    return f"run `povwatch cases roster {file}` where the case DB is reachable"


def refresh(settings: Settings, file: Path) -> CaseDbRefresh:
    """Import `file` into the configured case DB; never raises a PovwatchError (the topics are already loaded)."""
    if not configured(settings):
        return CaseDbRefresh(False, False, f"case DB not refreshed: no case DB configured (POVWATCH_CASE_DB); "
                                           f"{_later(file)}")
    from services.casedb.database import open_database
    from services.cases.store import Cases

    try:
        cases = Cases.from_settings(open_database(settings.case_db), settings)
        try:
            counts = cases.import_roster(file)
        finally:
            cases.close()
    except PovwatchError as exc:
        reason = " ".join(str(exc).split())  # one line, whatever the driver said
        return CaseDbRefresh(False, True, f"case DB not refreshed: {reason}; {_later(file)}")
    line = (f"case DB refreshed: households added {counts.households_added}  updated {counts.households_updated}  "
            f"unchanged {counts.households_unchanged}; members added {counts.members_added}  updated "
            f"{counts.members_updated}  unchanged {counts.members_unchanged}")
    return CaseDbRefresh(True, False, line, counts)
