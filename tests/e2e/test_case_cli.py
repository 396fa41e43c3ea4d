"""The case workers' commands as an operator runs them: `povwatch users add`, `cases roster`, `case advance|resolve|
show`, `alerts ack|resolve`, `cases list`, `audit household`, each a real subprocess on a SQLite case DB.

Success prints one line (or the view asked for) and exits 0; a refusal or bad input prints ONE line on stderr
(`povwatch: error: ...`, no traceback) and exits 2.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from services.casedb.database import open_database
from services.casedb.models import CaseAlert
from services.cases.store import Cases
from tests.cases_behaviour import HA, HEADER, V1, roster_rows
from tests.unit.doubles import write_csv

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    def __init__(self, tmp_path: Path) -> None:
        self.db = f"sqlite:///{tmp_path / 'cases.db'}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("POVWATCH_")}
        self.env.update(POVWATCH_CASE_DB=self.db, POVWATCH_MODE="development")

    def run(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert proc.returncode == code, f"povwatch {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stderr
        return proc

    def refused(self, *args: str) -> str:
        """Run a command that must be refused: exit 2, exactly one line on stderr; that line."""
        proc = self.run(*args, code=2)
        [line] = proc.stderr.strip().splitlines()
        assert line.startswith("povwatch: error: ")
        return line[len("povwatch: error: "):]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def world(cli: Cli, tmp_path: Path) -> int:
    """Users, the roster and one alert for household HA; returns its case id."""
    password = tmp_path / "pw.txt"
    password.write_text("correct horse battery\n", encoding="utf-8")
    out = cli.run("users", "add", "vil1", "--role", "village", "--region", V1, "--password-file", str(password))
    assert out.stdout == f"user vil1 added: village of {V1}\n"
    with open_database(cli.db) as store:  # the others in-process: each subprocess costs seconds
        cases = Cases(store)
        for name, role, region in (("vil2", "village", "652701100202"), ("town1", "township", V1[:9]),
                                   ("county", "county", V1[:6])):
            cases.add_user(name, role, region, "correct horse battery")
    roster = cli.run("cases", "roster", str(write_csv(tmp_path / "roster.csv", [HEADER, *roster_rows()])))
    assert roster.stdout.splitlines()[:3] == [
        "roster.csv: read 5  rejected 1  duplicates 0",
        "  households: added 3  updated 0  unchanged 0",
        "  members:    added 4  updated 0  unchanged 0"]
    assert roster.stdout.splitlines()[3].startswith("  row 6: id_number")
    with open_database(cli.db) as store:
        case_id = store.record_household_alert({
            "alert_id": "al-1", "household_id": HA, "village_code": V1, "rule": "MEDICAL_EXPENSE",
            "severity": "HIGH", "reason": "住院自付 32,000 元", "event_ids": ["e1"], "occurred_at": dt.date(2024, 7, 1),
            "raised_at": dt.datetime(2024, 7, 2, tzinfo=dt.UTC)}).case_id
        with Session(store.engine) as session, session.begin():
            if session.scalar(select(CaseAlert.id).where(CaseAlert.case_id == case_id)) is None:
                now = dt.datetime.now(dt.UTC)
                session.add(CaseAlert(case_id=case_id, household_id=HA, rule="MEDICAL_EXPENSE", status="OPEN",
                                      severity="HIGH", opened_at=now, updated_at=now))
    return case_id


def test_users_add_refuses_bad_input_in_one_line(cli: Cli, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("123456789\n", encoding="utf-8")
    good = tmp_path / "good.txt"
    good.write_text("a good long password\n", encoding="utf-8")
    assert cli.refused("users", "add", "x", "--role", "township", "--region", "652701", "--password-file",
                       str(good)) == "--region 652701 is a county code; a township user needs a 9-digit township code"
    assert cli.refused("users", "add", "x", "--role", "county", "--region", "652701", "--password-file",
                       str(short)) == "the password must be at least 10 characters"
    assert cli.refused("users", "add", "x", "--role", "boss", "--region", "652701", "--password-file",
                       str(good)) == "unknown role 'boss' (village, township, county or bureau)"
    assert cli.refused("users", "add", "x", "--role", "bureau", "--region", "6527", "--password-file",
                       str(tmp_path / "missing.txt")).startswith("--password-file")
    cli.run("users", "add", "boss", "--role", "bureau", "--region", "6527", "--password-file", str(good))
    assert cli.refused("users", "add", "boss", "--role", "bureau", "--region", "6527", "--password-file",
                       str(good)) == "user boss already exists"
    listed = json.loads(cli.run("users", "list", "--json").stdout)
    assert listed == [{"name": "boss", "role": "bureau", "region": "6527", "active": True}]


def test_case_advance_refusals_are_one_line_with_exit_2(cli: Cli, world: int) -> None:
    case = str(world)
    out = cli.run("case", "advance", case, "APPLY", "--by", "vil1", "--on", "2024-07-01", "--authorised",
                  "--note", "户主申请")
    assert out.stdout == (f"case {case}: APPLY on 2024-07-01 by vil1; household {HA} NOT_INCLUDED ORDINARY; "
                          "case OPEN; next: PUBLIC_NOTICE\n")
    assert cli.refused("case", "advance", case, "TOWNSHIP_VERIFY", "--by", "town1") == (
        f"case {case}: TOWNSHIP_VERIFY is not allowed now (last step: APPLY); allowed now: PUBLIC_NOTICE (by village)")
    cli.run("case", "advance", case, "PUBLIC_NOTICE", "--by", "vil1", "--on", "2024-07-02")
    assert cli.refused("case", "advance", case, "TOWNSHIP_VERIFY", "--by", "town1", "--on", "2024-07-06") == (
        f"case {case}: TOWNSHIP_VERIFY refused: the public notice of 2024-07-02 has stood 4 day(s); it must stand "
        "5 days (TOWNSHIP_VERIFY from 2024-07-07)")
    assert cli.refused("case", "advance", case, "TOWNSHIP_VERIFY", "--by", "vil2", "--on", "2024-07-07") == (
        f"case {case} (village {V1}) is outside the region 652701100202 of village user vil2")
    assert cli.refused("case", "advance", case, "TOWNSHIP_VERIFY", "--by", "town1", "--on", "7/7/2024") == (
        "--on '7/7/2024': a date as YYYY-MM-DD")
    assert cli.refused("case", "advance", case, "LEAP", "--by", "town1").startswith("unknown step 'LEAP' (APPLY, ")
    assert cli.refused("case", "advance", "999", "APPLY", "--by", "vil1") == "no case 999"
    cli.run("case", "advance", case, "TOWNSHIP_VERIFY", "--by", "town1", "--on", "2024-07-07")
    assert cli.refused("case", "advance", case, "COUNTY_CONFIRM", "--by", "town1", "--on", "2024-07-08") == (
        f"case {case}: COUNTY_CONFIRM needs a county user, not a township user")
    cli.run("case", "advance", case, "COUNTY_CONFIRM", "--by", "county", "--on", "2024-07-08")
    cli.run("case", "advance", case, "DATA_COMPARE", "--by", "county", "--on", "2024-07-09")
    out = cli.run("case", "advance", case, "LABEL", "--by", "county", "--on", "2024-07-10", "--category", "MARGINAL")
    assert out.stdout == (f"case {case}: LABEL on 2024-07-10 by county; household {HA} MONITORING MARGINAL; "
                          "case OPEN; next: NOMINATE_NOTICE\n")
    assert cli.refused("case", "advance", case, "NOMINATE_NOTICE", "--by", "vil1") == (
        f"case {case}: NOMINATE_NOTICE refused: the household has 1 open HIGH alert(s); resolve them first")

    listed = {c["id"]: c for c in json.loads(cli.run("cases", "list", "--json").stdout)}
    assert (listed[world]["workflow"], listed[world]["step"], listed[world]["household_status"]) == (
        "INCLUSION", "LABEL", "MONITORING")
    table = cli.run("cases", "list").stdout.splitlines()
    assert table[0].split() == ["CASE", "SUBJECT", "VILLAGE", "STATUS", "SEVERITY", "ALERTS", "RULES"]


def test_alerts_case_resolution_and_the_audit_log(cli: Cli, world: int) -> None:
    case = str(world)
    shown = json.loads(cli.run("case", "show", case, "--by", "vil1", "--json").stdout)
    assert [m["name"] for m in shown["members"]] == ["王建国", "李秀兰"]
    [alert] = shown["alerts"]
    assert alert["evidence"][0]["reason"] == "住院自付 32,000 元"
    text = cli.run("case", "show", case, "--by", "vil1").stdout
    assert "member: 王建国 (户主" in text and "next: APPLY" in text
    out = cli.run("alerts", "ack", str(alert["id"]), "--by", "vil1")
    assert out.stdout == f"alert {alert['id']} (MEDICAL_EXPENSE HIGH) of case {case}: ACKNOWLEDGED by vil1\n"
    assert cli.refused("alerts", "ack", "999", "--by", "vil1") == "no alert 999"
    assert cli.refused("alerts", "resolve", str(alert["id"]), "--by", "vil1", "--note", "x").startswith(
        f"alert {alert['id']}: resolving needs a bureau/county/township user")
    assert cli.refused("case", "resolve", case, "--by", "vil1", "--note", "误报") == (
        f"case {case}: resolving needs a bureau/county/township user, not a village user")
    out = cli.run("case", "resolve", case, "--by", "town1", "--note", "核实为误报")
    assert out.stdout == f"case {case}: resolved by town1 (1 alert(s) resolved); case CLOSED\n"
    audit = json.loads(cli.run("audit", "household", HA, "--json", "--case-db-only").stdout)
    assert [(a["user_name"], a["action"]) for a in audit] == [
        ("vil1", "VIEW_CASE"), ("vil1", "VIEW_CASE"), ("vil1", "ACKNOWLEDGE_ALERT"), ("vil1", "REFUSED"),
        ("vil1", "REFUSED"), ("town1", "RESOLVE_CASE")]
    lines = cli.run("audit", "household", HA, "--case-db-only").stdout.splitlines()
    assert lines[0].split()[:4] == ["WHEN", "(UTC)", "USER", "ACTION"] and len(lines) == 7
    assert (cli.run("audit", "household", "nobody", "--case-db-only").stdout
            == "(nobody has looked at or acted on this household)\n")


def _on_a_terminal(cli: Cli, args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run povwatch with a pseudo-terminal as its controlling terminal (getpass reads /dev/tty); type `answers`
    at each prompt. Returns the exit status and everything the terminal showed."""
    import pty
    import select as select_

    pid, fd = pty.fork()
    if pid == 0:  # the child: exec povwatch on the pty
        try:
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "-m", "services.cli", *args], cli.env)
        finally:
            os._exit(127)  # never return into pytest from the child
    shown, pending = b"", list(answers)
    while True:
        ready, _, _ = select_.select([fd], [], [], 60)
        assert ready, f"povwatch waits without a prompt; the terminal shows: {shown!r}"
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        if pending and chunk.endswith(b": "):  # a prompt (getpass turns echo off before writing it)
            os.write(fd, pending.pop(0).encode() + b"\n")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_users_add_asks_for_the_password_twice_on_the_terminal(cli: Cli) -> None:
    code, shown = _on_a_terminal(cli, ["users", "add", "wang", "--role", "village", "--region", V1],
                                 ["a long password 1", "a long password 1"])
    assert code == 0 and "password for wang:" in shown and "again:" in shown
    assert f"user wang added: village of {V1}" in shown and "a long password 1" not in shown  # not echoed
    code, shown = _on_a_terminal(cli, ["users", "add", "li", "--role", "county", "--region", "652701"],
                                 ["a long password 1", "another password"])
    assert code == 2 and "povwatch: error: the two passwords differ" in shown
    with open_database(cli.db) as store:
        assert Cases(store).authenticate("wang", "a long password 1") is not None
