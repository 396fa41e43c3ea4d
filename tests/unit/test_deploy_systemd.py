"""deploy/systemd/: every unit passes `systemd-analyze verify` (Debian's systemd), runs a real povwatch command as
the dedicated user with the hardening the operations guide promises, and the example environment files name only
settings that exist."""
from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from plumbing.settings import Settings
from services.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
SERVICES = sorted(UNITS.glob("*.service"))
TIMERS = sorted(UNITS.glob("*.timer"))
TIMED = {"povwatch-casedb-backup.service"}  # one-shot jobs started by a timer of the same name, not by the target
SYSTEM_UNITS = Path("/usr/lib/systemd/system")
POVWATCH = "/opt/povwatch/venv/bin/povwatch"


def _unit(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",), comment_prefixes=("#",),
                                          interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return parser


def _lines(path: Path, key: str) -> list[str]:
    """Every value of `key` in the unit (systemd allows a key more than once; configparser keeps the last)."""
    return [line.split("=", 1)[1] for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith(f"{key}=")]


def test_every_service_of_the_hub_has_a_unit() -> None:
    names = {p.name for p in SERVICES}
    assert names == {"povwatch-kafka.service", "povwatch-monitor.service", "povwatch-casefeed.service",
                     "povwatch-relay.service", "povwatch-intake.service", "povwatch-desk.service",
                     "povwatch-connector@.service", "povwatch-casedb-backup.service"}
    wanted = set(_unit(UNITS / "povwatch.target")["Unit"]["Wants"].split())
    assert wanted == names - {"povwatch-connector@.service"} - TIMED  # connectors are enabled per department


def test_every_timed_job_has_its_timer() -> None:
    assert {p.name for p in TIMERS} == {name.replace(".service", ".timer") for name in TIMED}
    for timer in TIMERS:
        unit = _unit(timer)
        assert unit["Timer"]["Unit"] == timer.name.replace(".timer", ".service")
        assert unit["Timer"]["Persistent"] == "true"  # a run missed while the host was off is made up at boot
        assert unit["Install"]["WantedBy"] == "timers.target"
        assert _unit(UNITS / unit["Timer"]["Unit"])["Service"]["Type"] == "oneshot"


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_unit_runs_as_the_dedicated_user_hardened(path: Path) -> None:
    service = _unit(path)["Service"]
    assert service["User"] == service["Group"] == "povwatch"
    assert service["Restart"] == "on-failure"
    env_files = _lines(path, "EnvironmentFile")
    assert env_files[0] == "/etc/povwatch/povwatch.env"
    assert all(f.lstrip("-").startswith("/etc/povwatch/") and f.endswith(".env") for f in env_files)
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == service["PrivateTmp"] == service["ProtectHome"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    writable = service["ReadWritePaths"].split()
    assert "/var/lib/povwatch" in writable
    assert all(w.lstrip("-").startswith(("/var/lib/povwatch", "/srv/povwatch/")) for w in writable)
    if path.name in TIMED:
        assert not _unit(path).has_section("Install")  # started by its timer only
    else:
        assert _unit(path)["Install"]["WantedBy"] == "povwatch.target"


@pytest.mark.parametrize("path", SERVICES, ids=lambda p: p.name)
def test_unit_commands_are_real_povwatch_commands(path: Path) -> None:
    """ExecStart (and ExecStop) parse with povwatch's own command line: a renamed command breaks this test."""
    commands = _lines(path, "ExecStart") + _lines(path, "ExecStop")
    assert commands
    for command in commands:
        argv = shlex.split(command.replace("%i", "medical-security"))
        assert argv[0] == POVWATCH
        build_parser().parse_args(argv[1:])  # SystemExit(2) on an unknown command or option


def test_services_stop_on_sigterm_not_a_harder_signal() -> None:
    for path in SERVICES:
        service = _unit(path)["Service"]
        assert service.get("KillSignal", "SIGTERM") == "SIGTERM", path.name
        assert int(service["TimeoutStopSec"]) >= 30, path.name  # time to finish and commit the batch in flight


def _require_systemd_analyze() -> None:
    assert shutil.which("systemd-analyze") and SYSTEM_UNITS.is_dir(), \
        "systemd-analyze is missing: scripts/setup.sh installs it (deploy/install-systemd-analyze.sh)"


def test_systemd_analyze_verify_passes_on_every_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` in a scratch root holding the system's units, ours, and an executable at the
    install path: every warning (an unknown key, a bad value, a missing command) fails the test."""
    _require_systemd_analyze()
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for unit in [*SERVICES, *TIMERS, UNITS / "povwatch.target"]:
        shutil.copy(unit, etc / unit.name)
    exe = root / POVWATCH.lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    names = [p.name.replace("@.service", "@medical-security.service") for p in [*SERVICES, *TIMERS]]
    names.append("povwatch.target")
    for name in names:
        done = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", name],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), \
            f"{name}: {done.stdout}{done.stderr}"


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key and a missing command are reported."""
    _require_systemd_analyze()
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    text = (UNITS / "povwatch-desk.service").read_text(encoding="utf-8")
    (etc / "povwatch-broken.service").write_text(text.replace("User=povwatch", "Usr=povwatch"))
    done = subprocess.run(["systemd-analyze", "verify", f"--root={root}", "--man=no", "povwatch-broken.service"],
                          capture_output=True, text=True, timeout=120)
    assert "Unknown key 'Usr'" in done.stderr
    assert "is not executable" in done.stderr  # /opt/povwatch does not exist in this root


@pytest.mark.parametrize("path", sorted(UNITS.glob("*.env")), ids=lambda p: p.name)
def test_example_environment_files_name_only_real_settings(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert key.startswith("POVWATCH_"), line
            values[key] = value
    assert values
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    try:
        settings = Settings()
    except ValidationError as exc:
        pytest.fail(f"{path.name}: {exc}")
    for key in values:
        assert key.removeprefix("POVWATCH_").lower() in type(settings).model_fields, key
