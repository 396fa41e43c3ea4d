"""The documentation under docs/: the generated files are what `python -m services.docgen` writes from the
declarations today, and the hand-written ones name every department, command and fixed topic there is."""
from __future__ import annotations

import argparse
import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.catalog import EVENT_FEEDS, ROSTER
from connectors.describe import check_text, column_kind
from schemas import topics
from schemas.catalog import INTAKE_CHANNELS, departments
from schemas.thresholds import RuleConfig, load_rules_file
from services import docgen
from services.cli import build_parser
from services.intake.mapping import MODELS
from services.monitor.ruledocs import RULE_DOCS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REGENERATE = "stale: run `.venv/bin/python -m services.docgen` and commit the result"


def test_docs_rules_md_is_the_generated_text() -> None:
    assert (DOCS / "rules.md").read_text(encoding="utf-8") == docgen.rules_markdown(), REGENERATE


def test_docs_feeds_md_is_the_generated_text() -> None:
    assert (DOCS / "feeds.md").read_text(encoding="utf-8") == docgen.feeds_markdown(), REGENERATE


def test_docgen_check_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    assert docgen.main(["--check"]) == 0
    assert docgen.main(["--bogus"]) == 2
    capsys.readouterr()


def test_the_generated_rules_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = docgen.rules_markdown()
    monkeypatch.setenv("POVWATCH_RULES__JOB_GAP_DAYS", "90")
    assert docgen.rules_markdown() == before
    assert "60 days" in before and "90 days" not in before


def test_rules_md_has_every_rule_threshold_and_section() -> None:
    text = docgen.rules_markdown()
    for rule, doc in RULE_DOCS.items():
        assert f"### {rule.value} — {doc.title}" in text
    for name in RuleConfig.model_fields:
        assert f"| `{name}` |" in text
    for heading in ("## One fact, one alert", "## Timers", "## Yearly facts", "## Thresholds", "## Income lines"):
        assert heading in text
    assert docgen.INCOME_LINES_EXAMPLE.rstrip("\n") in text


def test_the_income_lines_example_is_a_valid_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(docgen.INCOME_LINES_EXAMPLE, encoding="utf-8")
    cfg = RuleConfig(**load_rules_file(path))
    assert cfg.income_lines.line("652702", 2025) == Decimal("9600")
    assert cfg.income_lines.line("652702", 2023) == Decimal("9000")
    assert cfg.income_lines.line("652701", 2025) == Decimal("9000")


def test_feeds_md_has_every_feed_column_check_and_intake_field() -> None:
    text = docgen.feeds_markdown()
    for spec in (ROSTER, *EVENT_FEEDS.values()):
        assert f"`{spec.department}` `{spec.feed}` — {spec.wire.title}" in text
        for column in spec.columns:
            assert f"| {column.label} | `{column.field}` |" in text
        for check in spec.checks:
            assert f"- {check_text(check)}" in text
    for channel in INTAKE_CHANNELS:
        assert f"`{channel.topic}`" in text
    for model in MODELS.values():
        for name in model.model_fields:
            assert f"| `{name}` |" in text


def test_every_check_says_what_it_checks() -> None:
    for spec in (ROSTER, *EVENT_FEEDS.values()):
        for check in spec.checks:
            assert check_text(check).endswith("."), (spec.feed, check)

    def undocumented(values: object) -> None:
        return None

    with pytest.raises(ValueError, match="no docstring"):
        check_text(undocumented)  # type: ignore[arg-type]


def test_an_unknown_parser_is_not_described_silently() -> None:
    @dataclass(frozen=True)
    class Phone:
        def parse(self, text: str, today: dt.date) -> str:
            return text

    with pytest.raises(ValueError, match="Phone"):
        column_kind(Phone())


def test_domain_md_names_every_department() -> None:
    text = (DOCS / "domain.md").read_text(encoding="utf-8")
    slugs = set(re.findall(r"^\| `([a-z-]+)` \|", text, re.M))
    assert slugs == set(departments())


def _commands() -> list[str]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(sub.choices)


def test_architecture_md_names_every_command_and_fixed_topic() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    missing = [name for name in _commands() if f"`povwatch {name}" not in text]
    assert missing == [], f"commands not in docs/architecture.md: {missing}"
    for name in (topics.REGISTRY_PERSONS, topics.REGISTRY_HOUSEHOLDS, topics.REGISTRY_HOUSEHOLD_STATUS,
                 topics.ALERTS_HOUSEHOLD, topics.ALERTS_REGIONAL, topics.PROFILES_HOUSEHOLD, topics.MONITOR_DLQ,
                 topics.CASEFEED_DLQ):
        assert f"`{name}`" in text, name


def test_docs_link_only_to_files_that_exist() -> None:
    for path in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.name} links to {target}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).exists(), target
