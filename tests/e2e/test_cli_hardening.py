"""Issue #13 item 6, on the command line (real subprocesses on a SQLite case DB, tests/e2e/test_case_cli.py's world):

  * `povwatch case ...` / `alerts ack|resolve` / `household show` act as the --by user only with that user's
    password (a wrong one, or none, is refused in one line), or as the system with an explicit --as-system,
    recorded as system:USER;
  * `povwatch users passwd NAME` and `users disable|enable NAME` (passwd and disable end the user's desk sessions);
  * users cannot be named like the system's actors; weak passwords are refused;
  * a step cannot be dated before its case was opened.
"""
from __future__ import annotations

import json
from pathlib import Path

from services.casedb.database import open_database
from services.cases.store import Cases
from tests.e2e.test_case_cli import PASSWORD, Cli, cli, world  # noqa: F401  (fixtures)


def test_case_commands_need_the_users_password(cli: Cli, world: int, tmp_path: Path) -> None:  # noqa: F811
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the password at all\n", encoding="utf-8")
    case = str(world)
    line = cli.refused("case", "show", case, "--by", "vil1", "--password-file", str(wrong))
    assert line.startswith("--by vil1: wrong password") and "not the password" not in line
    assert cli.refused("case", "advance", case, "APPLY", "--by", "vil1", "--password-file", str(wrong),
                       "--on", "2024-07-01").startswith("--by vil1: wrong password")
    assert cli.refused("alerts", "ack", "1", "--by", "vil1", "--password-file", str(wrong)).startswith(
        "--by vil1: wrong password")
    assert cli.refused("household", "show", "BL-A-0001", "--by", "vil1", "--password-file",
                       str(wrong)).startswith("--by vil1: wrong password")  # a look in vil1's name, too
    proc = cli.run("case", "show", case, "--by", "vil1", "--as-system")  # the system, explicitly: allowed
    assert "next: APPLY" in proc.stdout
    with open_database(cli.db) as store:
        assert Cases(store).case_detail("county", world).history == ()
    out = cli.run("case", "advance", case, "APPLY", "--by", "vil1", "--as-system", "--on", "2024-07-01",
                  "--authorised")
    assert out.stdout.startswith(f"case {case}: APPLY on 2024-07-01 by system:vil1;")
    with open_database(cli.db) as store:
        history = Cases(store).case_detail("county", world).history
    assert [(h.step, h.by_user) for h in history if h.kind == "STEP"] == [("APPLY", "system:vil1")]


def test_case_commands_without_a_password_are_refused(cli: Cli, world: int) -> None:  # noqa: F811
    # no terminal (stdin is /dev/null) and no --password-file; then an empty one: one line, nothing done
    proc = cli.run("case", "show", str(world), "--by", "vil1", "--password-file", "/dev/null", code=2)
    assert proc.stderr.strip() == "povwatch: error: --by vil1: wrong password, or no such active user (or act as " \
                                  "the system with --as-system)"


def test_users_passwd_disable_enable(cli: Cli, world: int, tmp_path: Path) -> None:  # noqa: F811
    new = tmp_path / "new.txt"
    new.write_text("a brand new passphrase\n", encoding="utf-8")
    with open_database(cli.db) as store:  # a desk session of vil1's, as the desk stores it
        Cases(store).open_session("sid-of-a-desk-session", "vil1", 3600)
    out = cli.run("users", "passwd", "vil1", "--password-file", str(new))
    assert out.stdout == "user vil1: password changed; 1 desk session(s) ended\n"
    with open_database(cli.db) as store:
        cases = Cases(store)
        assert cases.session_user("sid-of-a-desk-session") is None
        assert cases.authenticate("vil1", PASSWORD) is None and cases.authenticate("vil1", "a brand new passphrase")
        cases.open_session("another-session", "vil1", 3600)
    assert cli.run("users", "disable", "vil1").stdout == "user vil1: disabled; 1 desk session(s) ended\n"
    listed = {u["name"]: u["active"] for u in json.loads(cli.run("users", "list", "--json").stdout)}
    assert listed["vil1"] is False and listed["vil2"] is True
    assert cli.refused("case", "show", str(world), "--by", "vil1", "--password-file", str(new)).startswith(
        "--by vil1: wrong password")
    assert cli.run("users", "enable", "vil1").stdout == "user vil1: enabled\n"
    assert cli.run("case", "show", str(world), "--by", "vil1", "--password-file", str(new)).returncode == 0
    assert cli.refused("users", "disable", "nobody") == "no user 'nobody' (povwatch users list)"
    weak = tmp_path / "weak.txt"
    weak.write_text("1234567890123\n", encoding="utf-8")
    assert cli.refused("users", "passwd", "vil1", "--password-file", str(weak)) == "the password is only digits"


def test_users_cannot_be_named_like_the_system(cli: Cli, tmp_path: Path) -> None:  # noqa: F811
    good = tmp_path / "good.txt"
    good.write_text("a good long password\n", encoding="utf-8")
    for name in ("casefeed", "povwatch-cli", "system:vil1", "Anonymous"):
        line = cli.refused("users", "add", name, "--role", "bureau", "--region", "6527", "--password-file",
                           str(good))
        assert "reserved" in line, line
    blanks = tmp_path / "blanks.txt"
    blanks.write_text(" " * 12 + "\n", encoding="utf-8")
    assert cli.refused("users", "add", "li", "--role", "bureau", "--region", "6527", "--password-file",
                       str(blanks)) == "the password is only blanks"


def test_a_step_cannot_be_backdated_before_the_case(cli: Cli, world: int) -> None:  # noqa: F811
    line = cli.refused("case", "advance", str(world), "APPLY", "--by", "vil1", "--on", "2024-06-01")
    assert line == f"case {world}: --on 2024-06-01 is before the case was opened (2024-07-01)"
    out = cli.run("case", "advance", str(world), "APPLY", "--by", "vil1", "--on", "2024-07-01")
    assert out.stdout.startswith(f"case {world}: APPLY on 2024-07-01 by vil1;")
