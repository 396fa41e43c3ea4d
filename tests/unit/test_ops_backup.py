"""`povwatch casedb backup|restore` (services/ops/backup.py) on real SQLite case DBs, and its pure parts: backup
names, which old backups go, the libpq target that keeps the password off the command line."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from schemas.errors import ConfigError
from services.casedb.database import open_database
from services.ops.backup import backup, backup_name, counts, libpq_target, restore, to_prune
from tests.casedb_behaviour import household_alert

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 12, 3, 2, 30, 0, tzinfo=dt.UTC)


def test_backup_names_sort_by_time_and_say_their_kind() -> None:
    assert backup_name("postgresql", NOW) == "povwatch-casedb-20261203T023000Z.dump"
    local = NOW.astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert backup_name("sqlite", local) == "povwatch-casedb-20261203T023000Z.sqlite"  # always UTC


def test_only_our_oldest_backups_beyond_keep_are_pruned() -> None:
    names = [backup_name("postgresql", NOW - dt.timedelta(days=d)) for d in range(5)] + ["notes.txt",
                                                                                         "povwatch-casedb-x.part"]
    assert to_prune(names, 3) == sorted(names[3:5])
    assert to_prune(names, 10) == []


def test_the_password_goes_in_the_environment_not_the_command_line() -> None:
    uri, env = libpq_target(make_url("postgresql+psycopg://povwatch:s3cret@db.example:5433/povwatch"))
    assert uri == "postgresql://povwatch@db.example:5433/povwatch"
    assert env["PGPASSWORD"] == "s3cret" and "s3cret" not in uri


def _filled(path: Path, alerts: int) -> str:
    url = f"sqlite:///{path}"
    with open_database(url) as store:
        for n in range(alerts):
            store.record_household_alert(household_alert(f"a{n}", household_id=f"65270100000000{n:04d}"))
    return url


def test_an_sqlite_backup_restores_to_the_same_cases_and_old_ones_are_pruned(tmp_path: Path) -> None:
    url = _filled(tmp_path / "cases.db", 7)
    made = [backup(url, tmp_path / "backups", 2, NOW + dt.timedelta(seconds=s)) for s in range(3)]
    assert made[-1].counts == {"cases": 7, "case_alerts": 7, "evidence": 7, "households": 0}
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == [made[1].path.name, made[2].path.name]
    assert made[2].pruned == (made[0].path.name,)

    target = f"sqlite:///{tmp_path / 'restored' / 'cases.db'}"
    result = restore(made[2].path, target)
    assert result.counts == made[2].counts
    with open_database(url) as original, open_database(target) as copy:
        assert copy.list_cases() == original.list_cases()


def test_restore_refuses_an_existing_database_and_the_wrong_kind(tmp_path: Path) -> None:
    url = _filled(tmp_path / "cases.db", 1)
    made = backup(url, tmp_path / "backups", 3, NOW)
    with pytest.raises(ConfigError, match="exists: restore into a new file"):
        restore(made.path, url)
    with pytest.raises(ConfigError, match="is not a backup for"):
        restore(made.path, "postgresql+psycopg://povwatch@127.0.0.1:1/none")
    with pytest.raises(ConfigError, match="no backup at"):
        restore(tmp_path / "missing.dump", url)
    with pytest.raises(ConfigError, match="--keep"):
        backup(url, tmp_path / "backups", 0, NOW)
    assert counts(url)["cases"] == 1  # untouched


def test_the_command_line_says_it_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "POVWATCH_CASE_DB": f"sqlite:///{tmp_path / 'none' / 'cases.db'}"}
    done = subprocess.run([sys.executable, "-m", "services.cli", "casedb", "restore", str(tmp_path / "x.dump")],
                          env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip() == f"povwatch: error: no backup at {tmp_path / 'x.dump'}"
