"""docs/runbook.md against what it names: its alert table lists exactly the alerts of deploy/prometheus/rules/,
every `povwatch` command in its shell blocks parses with povwatch's own command line, every file of the source
tree it installs exists, every environment file a unit requires is shipped, and the install scripts are
idempotent."""
from __future__ import annotations

import glob
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from services.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs" / "runbook.md"
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.rules.yml"))


def _section(title: str) -> str:
    text = RUNBOOK.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _rule_alerts() -> list[str]:
    names = []
    for path in RULES:
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names += [rule["alert"] for rule in group["rules"] if "alert" in rule]
    return names


def _table_alerts() -> list[str]:
    rows = [line for line in _section("10.").splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([A-Za-z]+)`", row).group(1) for row in rows]  # type: ignore[union-attr]


def test_the_alert_table_lists_exactly_the_rules() -> None:
    table, rules = _table_alerts(), _rule_alerts()
    assert rules, "no alert rules found"
    assert len(table) == len(set(table)), "an alert is listed twice"
    assert sorted(table) == sorted(rules)


def test_every_table_row_says_what_to_do() -> None:
    rows = [line for line in _section("10.").splitlines() if line.startswith("| `")]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4 and all(cells), row
        assert cells[1] in ("critical", "warning", "info"), row


def test_the_table_check_is_not_vacuous() -> None:
    """A rule the table forgets, or a row for a rule that does not exist, fails the check above."""
    table = _table_alerts()
    assert sorted(table[1:]) != sorted(_rule_alerts())
    assert sorted([*table, "PovwatchNoSuchAlert"]) != sorted(_rule_alerts())


def _shell_lines() -> list[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def _povwatch_commands() -> list[str]:
    return [line for line in _shell_lines() if line.startswith("povwatch ")]


def test_the_runbook_has_the_commands_of_every_procedure() -> None:
    commands = " ".join(_povwatch_commands())
    for needed in ("povwatch replay casefeed", "povwatch replay monitor", "povwatch rebuild monitor",
                   "povwatch casedb backup", "povwatch casedb restore", "povwatch topics ensure",
                   "povwatch roster load", "povwatch connector run", "povwatch status"):
        assert needed in commands, needed


@pytest.mark.parametrize("line", _povwatch_commands())
def test_every_povwatch_command_of_the_runbook_parses(line: str) -> None:
    argv = shlex.split(line, comments=True)
    build_parser().parse_args(argv[1:])  # SystemExit(2) on an unknown command or option


def test_every_source_file_the_runbook_installs_exists() -> None:
    paths = re.findall(r"/opt/povwatch/src/([\w./*@-]+)", RUNBOOK.read_text(encoding="utf-8"))
    assert paths
    for rel in paths:
        assert glob.glob(str(ROOT / rel)), f"docs/runbook.md names /opt/povwatch/src/{rel}, not in the repository"


def test_every_environment_file_a_unit_requires_is_shipped() -> None:
    """What the install copies to /etc/povwatch/ (deploy/systemd/*.env) holds every EnvironmentFile= a unit
    cannot start without (those without the leading `-`)."""
    shipped = {p.name for p in (ROOT / "deploy" / "systemd").glob("*.env")}
    units = sorted((ROOT / "deploy" / "systemd").glob("*.service"))
    assert units
    for unit in units:
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("EnvironmentFile=") and not line.startswith("EnvironmentFile=-"):
                name = Path(line.split("=", 1)[1]).name
                assert name in shipped, f"{unit.name} requires {name}, which deploy/systemd/ does not ship"


@pytest.mark.parametrize("script", ["install-promtool.sh", "install-chromium.sh", "install-systemd-analyze.sh"])
def test_the_install_scripts_are_idempotent(script: str) -> None:
    """scripts/setup.sh ran them once (the tests need it); run again, each finds its tool and changes nothing."""
    done = subprocess.run(["bash", str(ROOT / "deploy" / script)], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "nothing to do" in done.stdout + done.stderr


def test_the_install_steps_agree_with_deployment_md() -> None:
    apt = next(line for line in _shell_lines() if line.startswith("apt-get install"))
    assert apt in (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")


def test_operations_links_the_runbook() -> None:
    assert "(runbook.md)" in (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
