"""Procedures "Upgrade povwatch" (the case DB side) and "Back up and restore the case DB" (docs/runbook.md) on the
project's PostgreSQL (`scripts/postgres.sh`, POVWATCH_PG_PORT): a case DB of an old povwatch, with its cases, is
upgraded by the first command of the new version; a case worker is added; `povwatch casedb backup` dumps it;
`povwatch casedb restore` loads the dump into a fresh database; the command line and the web desk (logged in as
that case worker) see the same cases there. Restoring over a database with tables is refused in one line.

The databases are made by the cluster's superuser over its unix socket (the `povwatch` role may not create
databases, as on a bureau's server), dropped first so reruns are clean. The server is stopped at the end unless
it was running before."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.casedb.database import open_database
from services.cases.store import Cases
from services.desk.app import create_app
from tests.casedb_migrations import HH1, build_issue2_schema, check_upgraded_issue2_db, fill_issue2_db

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "postgres.sh"
PASSWORD = "runbook-password-0123"


def _script(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=900,
                          stdin=subprocess.DEVNULL)


class Cluster:
    def __init__(self, url: str, data: str) -> None:
        self.url, self.data = url, data
        self.port = url.rsplit(":", 1)[1].split("/")[0]

    def admin(self, sql: str) -> None:
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.data, "-p", self.port, "-U", "postgres",
                "-d", "postgres", "-c", sql]
        argv = ["runuser", "-u", "postgres", "--", *psql] if os.geteuid() == 0 else psql
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd="/")
        assert done.returncode == 0, done.stderr

    def fresh_database(self, name: str) -> str:
        self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin(f"CREATE DATABASE {name} OWNER povwatch")
        return self.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    was_running = _script("status").returncode == 0
    started = _script("start")
    lines = started.stdout.strip().splitlines()
    if started.returncode != 0 or not lines or not lines[-1].startswith("postgresql+psycopg://"):
        pytest.fail(f"scripts/postgres.sh start failed:\n{started.stdout}{started.stderr}", pytrace=False)
    data = re.search(r"\(data: ([^)]+)\)", _script("status").stdout)
    assert data, "scripts/postgres.sh status names no data directory"
    try:
        yield Cluster(lines[-1], data.group(1))
    finally:
        if not was_running:
            _script("stop")


def _cli(*args: str, env: dict[str, str], code: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == code, f"povwatch {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done


def _desk_sees(url: str, name: str) -> list[str]:
    """Log in to the web desk on the case DB at `url` as `name`; the household ids its case list shows."""
    with open_database(url) as store:
        client = TestClient(create_app(Cases(store), secret="runbook-desk-secret-0123456789abcdef"),
                            base_url="https://testserver", follow_redirects=False)
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert token
        answer = client.post("/login", data={"name": name, "password": PASSWORD, "csrf": token.group(1)})
        assert answer.status_code == 303, answer.text
        page = client.get("/cases")
        assert page.status_code == 200
        return sorted(set(re.findall(r"65270100000000000\d", page.text)))


def test_upgrade_then_backup_and_restore_into_a_fresh_database(cluster: Cluster, tmp_path: Path) -> None:
    old = cluster.fresh_database("runbook_cases")
    restored = cluster.fresh_database("runbook_cases_restored")
    build_issue2_schema(old)  # a case DB as an old povwatch left it, with its cases and evidence
    fill_issue2_db(old)
    env = {"POVWATCH_CASE_DB": old}

    # the upgrade: the new version's first command brings the schema to its head, keeping everything
    listed = json.loads(_cli("cases", "list", "--json", env=env).stdout)
    with open_database(old) as store:
        check_upgraded_issue2_db(store)
    (tmp_path / "password").write_text(PASSWORD + "\n")
    _cli("users", "add", "runbook-bureau", "--role", "bureau", "--region", "6527", "--password-file",
         str(tmp_path / "password"), env=env)

    # the backup, as the timer runs it
    backups = tmp_path / "backups"
    out = _cli("casedb", "backup", "--dir", str(backups), "--keep", "2", env=env).stdout
    [dump] = sorted(backups.iterdir())
    assert dump.suffix == ".dump" and f"backup: {dump}" in out and "cases 4" in out
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format

    # the restore, into the fresh database
    out = _cli("casedb", "restore", str(dump), "--to", restored, env=env).stdout
    assert "restored into" in out and "cases 4" in out and "password" not in out.split("restored into")[1]
    assert json.loads(_cli("cases", "list", "--json", env={"POVWATCH_CASE_DB": restored}).stdout) == listed
    with open_database(restored) as store, open_database(old) as original:
        assert store.list_cases() == original.list_cases()
    assert _desk_sees(restored, "runbook-bureau") == _desk_sees(old, "runbook-bureau")
    assert HH1 in _desk_sees(restored, "runbook-bureau")

    # over a database that has tables: refused, one line, nothing touched
    refused = _cli("casedb", "restore", str(dump), "--to", restored, env=env, code=2)
    assert "is not empty" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert "Traceback" not in refused.stderr
