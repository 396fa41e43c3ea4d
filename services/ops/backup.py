"""The case DB's backup and restore (`povwatch casedb backup|restore`), run nightly by
deploy/systemd/povwatch-casedb-backup.timer.

    backup_name(kind, when)          "povwatch-casedb-20261203T023000Z.dump" (.sqlite for SQLite) (pure)
    to_prune(names, keep)            the backup file names beyond the newest `keep` (pure)
    libpq_target(url)                (libpq URI without the password, environment with PGPASSWORD)
    backup(url, directory, keep, now) -> BackupResult     PostgreSQL: pg_dump --format=custom; SQLite: its backup API
    restore(path, url) -> RestoreResult                    into an EMPTY database (refused otherwise), then the
                                                           schema brought to this version's head (open_database)
    counts(url)                      cases, alerts and evidence rows (what both commands print, to compare)

A PostgreSQL backup is the whole database (pg_dump of the URL's database). Every failure is one line (a
ConfigError or EnvironmentProblem), never a traceback.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL

from schemas.errors import ConfigError, EnvironmentProblem
from services.casedb.engine import make_engine, resolve_url

__all__ = ["BackupResult", "RestoreResult", "backup_name", "to_prune", "libpq_target", "backup", "restore",
           "counts", "PREFIX"]

PREFIX = "povwatch-casedb-"
_TOOL_TIMEOUT = 3600  # seconds: a dump or restore that takes longer has hung


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int
    counts: dict[str, int]
    pruned: tuple[str, ...]


@dataclass(frozen=True)
class RestoreResult:
    target: str  # the URL, password hidden
    counts: dict[str, int]


def backup_name(kind: str, when: dt.datetime) -> str:
    """The file name of a backup taken at `when` (UTC): sortable, one per second."""
    suffix = ".sqlite" if kind == "sqlite" else ".dump"
    return f"{PREFIX}{when.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}{suffix}"


def to_prune(names: list[str], keep: int) -> list[str]:
    """The backups (by name, this module's pattern only) beyond the newest `keep`; other files are never named."""
    ours = sorted((n for n in names if n.startswith(PREFIX) and n.endswith((".dump", ".sqlite"))), reverse=True)
    return sorted(ours[keep:])


def libpq_target(url: URL) -> tuple[str, dict[str, str]]:
    """What pg_dump/pg_restore need: a libpq URI without the password (it goes in PGPASSWORD, not on the command
    line where `ps` shows it) and the environment."""
    host = url.host or "localhost"
    netloc = urllib.parse.quote(url.username or "", safe="") + ("@" if url.username else "")
    netloc += f"[{host}]" if ":" in host else host
    if url.port:
        netloc += f":{url.port}"
    uri = f"postgresql://{netloc}/{urllib.parse.quote(url.database or '', safe='')}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # the caller's libpq settings stay out
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return uri, env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise EnvironmentProblem(f"'{name}' not found: install Debian's postgresql-client (the same major version "
                                 "as the server or newer)")
    return found


def _run(argv: list[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=_TOOL_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"{Path(argv[0]).name} did not finish within {_TOOL_TIMEOUT} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise EnvironmentProblem(f"{Path(argv[0]).name} failed (exit {done.returncode}): "
                                 f"{lines[-1] if lines else 'no message'}")


def counts(url: str) -> dict[str, int]:
    """Rows of the case DB's main tables (missing tables count 0): cases, case alerts, evidence, households."""
    engine = make_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names())
            return {name: int(conn.scalar(text(f"SELECT count(*) FROM {name}")) or 0) if name in present else 0
                    for name in ("cases", "case_alerts", "evidence", "households")}
    finally:
        engine.dispose()


def _sqlite_path(url: URL) -> Path:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise ConfigError(f"POVWATCH_CASE_DB: an SQLite database in memory or a file: URI cannot be backed up "
                          f"({url.render_as_string(hide_password=True)})")
    return Path(database).expanduser()


def backup(url: str, directory: Path, keep: int, now: dt.datetime) -> BackupResult:
    """One backup of the case DB at `url` into `directory` (created), then the oldest beyond `keep` removed."""
    if keep < 1:
        raise ConfigError("--keep must be at least 1")
    parsed = resolve_url(url)
    kind = parsed.get_backend_name()
    if kind not in ("sqlite", "postgresql"):
        raise ConfigError(f"POVWATCH_CASE_DB: cannot back up a {kind} database")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the backup directory {directory}: {exc.strerror or exc}") from None
    before = counts(url)
    path = directory / backup_name(kind, now)
    partial = path.with_name(path.name + ".partial")  # never a half-written file under a backup's name
    if kind == "sqlite":
        source_path = _sqlite_path(parsed)
        if not source_path.exists():
            raise ConfigError(f"POVWATCH_CASE_DB: no SQLite database at {source_path}")
        with sqlite3.connect(source_path) as source, sqlite3.connect(partial) as copy:
            source.backup(copy)
        copy.close()
    else:
        uri, env = libpq_target(parsed)
        _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges", f"--file={partial}",
              f"--dbname={uri}"], env)
    partial.replace(path)
    pruned = to_prune([p.name for p in directory.iterdir()], keep)
    for name in pruned:
        (directory / name).unlink()
    return BackupResult(path, path.stat().st_size, before, tuple(pruned))


def _empty(url: str) -> list[str]:
    """The tables already in the target database: a restore needs none."""
    engine = make_engine(resolve_url(url))
    try:
        with engine.connect() as conn:
            return sorted(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def restore(path: Path, url: str) -> RestoreResult:
    """Restore the backup at `path` into the EMPTY database at `url`, then bring its schema to this version's
    head (a backup of an older povwatch is upgraded as any case DB is)."""
    from services.casedb.database import open_database

    if not path.is_file():
        raise ConfigError(f"no backup at {path}")
    parsed = resolve_url(url)
    kind = parsed.get_backend_name()
    shown = parsed.render_as_string(hide_password=True)
    if path.suffix == ".sqlite" and kind == "sqlite":
        target = _sqlite_path(parsed)
        if target.exists() and target.stat().st_size > 0:
            raise ConfigError(f"{shown} exists: restore into a new file (or move the old one away first)")
        target.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as source, sqlite3.connect(target) as copy:
            source.backup(copy)
        copy.close()
    elif path.suffix == ".dump" and kind == "postgresql":
        tables = _empty(url)
        if tables:
            raise ConfigError(f"{shown} is not empty ({len(tables)} tables, e.g. {tables[0]}): restore into a new "
                              "database (createdb) and point POVWATCH_CASE_DB at it")
        uri, env = libpq_target(parsed)
        _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
              f"--dbname={uri}", str(path)], env)
    else:
        raise ConfigError(f"{path.name} is not a backup for {shown} (.dump restores into PostgreSQL, .sqlite into "
                          "SQLite)")
    open_database(url).close()  # the schema at this version's head
    return RestoreResult(shown, counts(url))
