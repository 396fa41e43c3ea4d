"""The rules described (services/monitor/ruledocs.py) and `povwatch rules list`: every rule has its entry, every
threshold its rule, the conditions show the thresholds in force, and a malformed rules file is one line, exit 2.

The command runs in process (`services.cli.main`) and as a child process (`python -m services.cli`), with the
environment it is given and nothing else of the caller's POVWATCH_* settings.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from schemas.alerts import HOUSEHOLD_RULES, REGIONAL_RULES, Rule, Severity
from schemas.catalog import feeds_of_rule
from schemas.thresholds import IncomeLines, RuleConfig
from services.cli import main
from services.monitor.ruledocs import (
    GENERAL_THRESHOLDS,
    RULE_DOCS,
    conditions,
    placeholders,
    render_rules_json,
    render_rules_text,
    shown,
    threshold_users,
    timer_text,
)

ROOT = Path(__file__).resolve().parents[2]
CJK = re.compile(r"[\u4e00-\u9fff]")


# --- the descriptions ----------------------------------------------------------------------------------------


def test_every_rule_has_an_entry_with_its_scope() -> None:
    assert set(RULE_DOCS) == set(Rule)
    assert len(RULE_DOCS) == 24
    for rule, doc in RULE_DOCS.items():
        assert doc.rule is rule
        assert doc.scope == ("regional" if rule in REGIONAL_RULES else "household")
        assert (rule in HOUSEHOLD_RULES) == (doc.scope == "household")
        assert CJK.search(doc.title) and CJK.search(doc.condition_zh), rule
        assert doc.condition_en and doc.fact, rule


def test_every_threshold_named_is_a_rule_config_field() -> None:
    fields = set(RuleConfig.model_fields)
    for doc in RULE_DOCS.values():
        assert set(doc.thresholds) <= fields, (doc.rule, set(doc.thresholds) - fields)
    assert set(GENERAL_THRESHOLDS) <= fields


def test_every_rule_config_field_is_used_by_some_rule_or_general() -> None:
    users = threshold_users()
    unused = [name for name, rules in users.items() if not rules and name not in GENERAL_THRESHOLDS]
    assert unused == []
    assert all(not users[name] for name in GENERAL_THRESHOLDS)  # a general one is not a rule's own


def test_conditions_name_exactly_the_thresholds_they_list() -> None:
    for doc in RULE_DOCS.values():
        assert set(placeholders(doc.condition_zh)) == set(doc.thresholds), doc.rule
        assert set(placeholders(doc.condition_en)) == set(doc.thresholds), doc.rule
        assert set(placeholders(doc.timer)) <= set(doc.thresholds), doc.rule


def test_conditions_show_the_thresholds_in_force() -> None:
    changed = RuleConfig(job_gap_days=90, medical_income_share=Decimal("0.4"), machinery_net_price=Decimal("80000"),
                         income_lines=IncomeLines(default=Decimal("9500")))
    zh, en = conditions(RULE_DOCS[Rule.JOB_LOSS], changed)
    assert "90 天" in zh and "90 days" in en and "60" not in en
    assert "90 days" in timer_text(RULE_DOCS[Rule.JOB_LOSS], changed)
    zh, en = conditions(RULE_DOCS[Rule.MEDICAL_EXPENSE], changed)
    assert "40%" in zh and "40%" in en and "50%" not in en
    assert "80,000" in conditions(RULE_DOCS[Rule.ASSET_PURCHASE], changed)[1]
    assert "9,500" in conditions(RULE_DOCS[Rule.INCOME_BELOW_LINE], changed)[1]
    default_zh, default_en = conditions(RULE_DOCS[Rule.JOB_LOSS], RuleConfig())
    assert "60 天" in default_zh and "60 days" in default_en
    assert "{" not in default_zh + default_en


def test_thresholds_are_shown_as_people_read_them() -> None:
    assert shown("medical_income_share", Decimal("0.5")) == "50%"
    assert shown("deposit_income_share", Decimal("1")) == "100%"
    assert shown("income_drop_share", Decimal("0.75")) == "75%"
    assert shown("medical_stay_out_of_pocket", Decimal("10000")) == "10,000"
    assert shown("village_lost_area_mu", Decimal("100.5")) == "100.5"
    assert shown("job_gap_days", 60) == "60"
    assert shown("income_lines", IncomeLines()) == "9,000"


def test_feeds_and_timers_are_those_of_the_contract() -> None:
    for rule in Rule:
        feeds = feeds_of_rule(rule)
        assert bool(feeds) == (rule != Rule.REGIONAL_RISK_CLUSTER), rule  # the cluster counts alerts, not rows
    timed = {rule for rule, doc in RULE_DOCS.items() if doc.timer}
    assert timed == {Rule.JOB_LOSS, Rule.WATER_UNSAFE, Rule.REGIONAL_WATER}


def test_every_rule_has_a_worked_example_that_raises_an_alert() -> None:
    for rule, doc in RULE_DOCS.items():
        assert any(e.severity is not None for e in doc.examples), rule
        for example in doc.examples:
            assert example.given, rule
            if example.severity is None:
                assert example.reason == "", rule
            else:
                assert isinstance(example.severity, Severity)
                assert CJK.search(example.reason), (rule, example)
    asset = RULE_DOCS[Rule.ASSET_PURCHASE]
    assert {e.severity for e in asset.examples} == {Severity.LOW, None}  # LOW, monitored households only


# --- the renderings ------------------------------------------------------------------------------------------


def test_json_lists_every_rule_with_its_feeds_and_the_thresholds() -> None:
    cfg = RuleConfig(job_gap_days=75)
    data = json.loads(render_rules_json(cfg, "/etc/povwatch/rules.toml"))
    assert [r["rule"] for r in data["rules"]] == [*HOUSEHOLD_RULES, *(r for r in Rule if r in REGIONAL_RULES)]
    death = data["rules"][0]
    assert death["scope"] == "household" and death["title"] == "家庭成员死亡"
    assert [(f["department"], f["feed"], f["title"]) for f in death["feeds"]] == [
        ("public-security", "registration-change", "户籍变动"), ("public-security", "traffic-accident", "交通事故"),
        ("health", "chronic-disease", "重点慢病")]
    job = next(r for r in data["rules"] if r["rule"] == "JOB_LOSS")
    assert job["thresholds"] == {"job_gap_days": 75} and "75 days" in job["condition_en"]
    assert data["thresholds"]["job_gap_days"] == 75 and data["defaults"]["job_gap_days"] == 60
    assert data["thresholds"]["medical_income_share"] == 0.5
    assert data["thresholds"]["income_lines"] == {"default": 9000, "counties": {}}
    assert set(data["thresholds"]) == set(RuleConfig.model_fields)
    assert data["rules_file"] == "/etc/povwatch/rules.toml"


def test_text_shows_every_rule_feed_and_the_changed_thresholds() -> None:
    cfg = RuleConfig(job_gap_days=75, income_lines=IncomeLines(counties={"652702": {2025: Decimal("9600")}}))
    text = render_rules_text(cfg, None)
    for rule in Rule:
        assert f"{rule.value} {RULE_DOCS[rule].title} ({RULE_DOCS[rule].scope})" in text
        for feed in feeds_of_rule(rule):
            assert f"{feed.department} {feed.feed} {feed.title}" in text
    assert re.search(r"^  job_gap_days +75  \(default 60\)$", text, re.M)
    assert re.search(r"^  water_unsolved_days +30$", text, re.M)
    assert re.search(r"^  652702 +2025: 9,600$", text, re.M)
    assert "no POVWATCH_RULES_FILE" in text


# --- the command ---------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("POVWATCH_"):
            monkeypatch.delenv(name)


def _rules_file(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
job_gap_days = 90
water_unsolved_days = 45
[income_lines]
default = 9200
[income_lines.counties."652702"]
2025 = 9600
"""


def test_in_process_text_and_json(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "list"]) == 0
    text = capsys.readouterr().out
    assert "DEATH_IN_HOUSEHOLD 家庭成员死亡 (household)" in text and "default  9,000" in text

    monkeypatch.setenv("POVWATCH_RULES_FILE", str(_rules_file(tmp_path, GOOD)))
    monkeypatch.setenv("POVWATCH_RULES__JOB_GAP_DAYS", "75")
    assert main(["rules", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["thresholds"]["job_gap_days"] == 75  # the variable beats the file
    assert data["thresholds"]["water_unsolved_days"] == 45  # the file beats the default
    assert data["thresholds"]["income_lines"] == {"default": 9200, "counties": {"652702": {"2025": 9600}}}
    assert data["rules_file"] == str(tmp_path / "rules.toml")
    assert main(["rules", "list"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^  652702 +2025: 9,600$", text, re.M)
    assert re.search(r"^  default +9,200$", text, re.M)
    assert re.search(r"^  job_gap_days +75  \(default 60\)$", text, re.M)


def test_in_process_malformed_file_is_one_line_exit_2(clean_env: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POVWATCH_RULES_FILE", str(_rules_file(tmp_path, "jobgap = 3\n")))
    assert main(["rules", "list"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "jobgap" in captured.err


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POVWATCH_")}
    return subprocess.run([sys.executable, "-m", "services.cli", "rules", "list", *args], cwd=ROOT,
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.integration  # runs the command as a child process, as tests/e2e/ does: seconds each
def test_subprocess_text_json_and_env_over_file(tmp_path: Path) -> None:
    path = _rules_file(tmp_path, GOOD)
    result = _run({"POVWATCH_RULES_FILE": str(path), "POVWATCH_RULES__JOB_GAP_DAYS": "75"})
    assert result.returncode == 0, result.stderr
    assert "job_gap_days" in result.stdout and re.search(r"^  job_gap_days +75  \(default 60\)$", result.stdout, re.M)
    assert re.search(r"^  water_unsolved_days +45  \(default 30\)$", result.stdout, re.M)
    assert re.search(r"^  652702 +2025: 9,600$", result.stdout, re.M)
    assert "MEDIUM once 75 days have passed" in result.stdout
    result = _run({"POVWATCH_RULES_FILE": str(path), "POVWATCH_RULES__JOB_GAP_DAYS": "75"}, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["thresholds"]["job_gap_days"] == 75 and data["thresholds"]["water_unsolved_days"] == 45
    assert data["thresholds"]["income_lines"]["counties"] == {"652702": {"2025": 9600}}
    assert len(data["rules"]) == 24


@pytest.mark.integration  # runs the command as a child process, as tests/e2e/ does: seconds each
@pytest.mark.parametrize(("text", "names"), [
    ("job_gap_days = \n", ["not TOML", "line 1"]),
    ("jobgap = 3\n", ["jobgap"]),
    ("[income_lines]\ndefault = -1\n", ["income_lines.default"]),
    ("[income_lines.counties.\"652702\"]\n2025 = -5\n", ["income_lines.counties", "652702", "positive"]),
    ("[income_lines.counties.\"65270\"]\n2025 = 9600\n", ["income_lines.counties", "65270", "6-digit"]),
    ("[income_lines.counties.\"652702\"]\nnext = 9600\n", ["income_lines.counties.652702.next", "a number"]),
], ids=["bad-toml", "unknown-key", "negative-default", "negative-county-line", "county-not-6-digits",
        "year-not-a-number"])
def test_subprocess_malformed_rules_file_is_one_line_exit_2(tmp_path: Path, text: str, names: list[str]) -> None:
    path = _rules_file(tmp_path, text)
    for args in ((), ("--json",)):
        result = _run({"POVWATCH_RULES_FILE": str(path)}, *args)
        assert result.returncode == 2, result
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"povwatch: error: rules file {path}: ")
        assert "Traceback" not in result.stderr
        for name in names:
            assert name in lines[0]


@pytest.mark.integration  # runs the command as a child process, as tests/e2e/ does: seconds each
def test_subprocess_missing_file_and_bad_variable_are_one_line(tmp_path: Path) -> None:
    result = _run({"POVWATCH_RULES_FILE": str(tmp_path / "absent.toml")})
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "not found" in result.stderr
    result = _run({"POVWATCH_RULES__JOB_GAP_DAYS": "sixty"})
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "POVWATCH_RULES__JOB_GAP_DAYS" in result.stderr and "Traceback" not in result.stderr
