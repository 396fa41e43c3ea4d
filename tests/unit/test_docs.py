"""The documentation under docs/: the generated files are what `python -m services.docgen` writes from the
declarations today, and the hand-written ones name every department, command and fixed topic there is."""
from __future__ import annotations

import argparse
import ast
import datetime as dt
import re
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import BaseModel

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
Settings = docgen.Settings  # the settings class docs/configuration.md is generated from


def test_docs_rules_md_is_the_generated_text() -> None:
    assert (DOCS / "rules.md").read_text(encoding="utf-8") == docgen.rules_markdown(), REGENERATE


def test_docs_feeds_md_is_the_generated_text() -> None:
    assert (DOCS / "feeds.md").read_text(encoding="utf-8") == docgen.feeds_markdown(), REGENERATE


def test_docs_configuration_md_is_the_generated_text() -> None:
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == docgen.configuration_markdown(), REGENERATE


def _variables_of(model: type[BaseModel], prefix: str = "POVWATCH_") -> set[str]:
    """The environment variables pydantic-settings reads for `model` (prefix POVWATCH_, nested with __)."""
    out: set[str] = set()
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            out |= _variables_of(type(default), f"{prefix}{name.upper()}__")
        else:
            out.add(prefix + name.upper())
    return out


def _documented_variables() -> dict[str, list[str]]:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(POVWATCH_[A-Z0-9_]+)` \| (.+) \|$", text, re.M)
    return {name: cells.split(" | ") for name, cells in rows}


def test_configuration_md_has_every_setting_once_with_type_default_and_meaning() -> None:
    rows = _documented_variables()
    assert set(rows) == _variables_of(Settings)
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for name, (kind, default, meaning) in rows.items():
        assert text.count(f"| `{name}` |") == 1, name
        assert kind and default and len(meaning) > 10, name
    assert rows["POVWATCH_CASE_VERIFY_DAYS"][1] == "`15`"
    assert rows["POVWATCH_RULES__JOB_GAP_DAYS"][1] == "`60`"
    assert rows["POVWATCH_KAFKA_HOME"][1] == "`~/.cache/povwatch/kafka`", "no one's home directory in the doc"
    assert rows["POVWATCH_PSEUDONYM_KEY"][1] == "the development key", "the key itself is not printed"


def test_every_documented_variable_is_read_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each variable of the doc, set to a value of its type, changes what Settings reads (the name is real)."""
    samples = {"text": "x-1", "integer": "7", "number": "7.5", "path": "/tmp/povwatch-x"}
    checked = 0
    for name, (kind, _, _) in _documented_variables().items():
        sample = next((v for k, v in samples.items() if kind.startswith(k)), None)
        if sample is None or "RULES__" in name:
            continue
        sample = "Asia/Urumqi" if name == "POVWATCH_TIMEZONE" else sample
        monkeypatch.setenv(name, sample)
        assert str(getattr(Settings(), name.removeprefix("POVWATCH_").lower())) == sample, name
        monkeypatch.delenv(name)
        checked += 1
    monkeypatch.setenv("POVWATCH_RULES__JOB_GAP_DAYS", "90")
    monkeypatch.setenv("POVWATCH_RULES__INCOME_LINES__DEFAULT", "9500")
    assert (Settings().rules.job_gap_days, Settings().rules.income_lines.default) == (90, Decimal("9500"))
    assert checked >= 20


def test_a_setting_without_a_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    class Undocumented(Settings):
        shiny_new_port: int = 9999

    monkeypatch.setattr(docgen, "Settings", Undocumented)
    with pytest.raises(ValueError, match="shiny_new_port has no description"):
        docgen.setting_variables()


# Variables that are not settings of the product, each documented on the page of whoever uses it: the tests' ports
# and browser (docs/testing.md), the deployment's own (docs/deployment.md).
OTHER_VARIABLES = {"POVWATCH_TEST_BROKER_PORT": "testing.md", "POVWATCH_PG_PORT": "testing.md",
                   "POVWATCH_TEST_SECURE": "testing.md",
                   "POVWATCH_CHROMIUM": "testing.md", "POVWATCH_DB_PASSWORD": "deployment.md"}
VARIABLE = re.compile(r"POVWATCH_[A-Z0-9_]*[A-Z0-9]")


def _variables_named_in(path: Path, text: str) -> list[str]:
    """The POVWATCH_* names a file uses as variables: in Python, only inside strings and comments (a Python constant
    whose name starts with the prefix is not a variable)."""
    if path.suffix != ".py":
        return VARIABLE.findall(text)
    import io
    import tokenize

    found = []
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type in (tokenize.STRING, tokenize.COMMENT) or token.type == getattr(tokenize, "FSTRING_MIDDLE", -1):
            found += VARIABLE.findall(token.string)
    return found


def test_every_povwatch_variable_named_anywhere_is_documented() -> None:
    """A `POVWATCH_*` name in any file of the project (code, docs, scripts, deployment files, tests) is a setting of
    docs/configuration.md or one of the other variables, documented where it is used: a misspelt name is caught
    here."""
    known = set(_documented_variables())
    for name, page in OTHER_VARIABLES.items():
        assert name in (DOCS / page).read_text(encoding="utf-8"), f"{name} is not in docs/{page}"
    known |= set(OTHER_VARIABLES)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, timeout=60, check=True)
    unknown = set()
    for name in listed.stdout.decode("utf-8").split("\0"):
        path = ROOT / name
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary, or deleted and not yet staged
        for variable in _variables_named_in(path, text):
            if variable not in known and not any(k.startswith(variable + "_") for k in known):
                unknown.add(f"{name}: {variable}")
    assert unknown == set(), "POVWATCH_* names documented nowhere:\n" + "\n".join(sorted(unknown))


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


# --- the glossary of docs/architecture.md names things as the code names them --------------------------------------


def _case_db_tables() -> dict[str, set[str]]:
    """Every table of the case DB with its columns, from the ORM models."""
    from services.casedb.models import Base

    return {name: {c.name for c in table.columns} for name, table in Base.metadata.tables.items()}


def _avro_fields() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "schemas" / "avro").glob("*.avsc"):
        names |= set(re.findall(r'"name": "([a-z_]+)"', path.read_text(encoding="utf-8")))
    return names


def _glossary() -> str:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    return text[text.index("## Glossary"):]


def test_the_glossary_names_what_the_code_has() -> None:
    """Every code name the glossary gives — an Avro type, a Python name, a table or column, a field, a topic, a
    metric — exists under that name."""
    import importlib

    tables = _case_db_tables()
    columns = set().union(*tables.values())
    fields = _avro_fields()
    from schemas.catalog import project_topics

    topic_names = {t.name for t in project_topics()}
    code = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "services").rglob("*.py"))
    wrong = []
    names = set(re.findall(r"`([^`<>\s]+)`", _glossary()))
    for name in sorted(names):
        if name.startswith("povwatch."):
            ok = (ROOT / "schemas" / "avro" / f"{name}.avsc").exists()
        elif name.split(".")[0] in {"schemas", "connectors", "services"} and "/" not in name:
            module, _, attr = name.rpartition(".")
            try:
                ok = hasattr(importlib.import_module(module), attr)
            except ImportError:
                module, _, klass = module.rpartition(".")
                ok = hasattr(getattr(importlib.import_module(module), klass, None), attr)
        elif name in topic_names or name.startswith("povwatch_"):
            ok = name in topic_names or f'"{name}"' in code
        elif "." in name and name.split(".")[0] in tables:
            table, _, column = name.partition(".")
            ok = column in tables[table]
        elif re.fullmatch(r"[a-z]+(_[a-z]+)+", name):
            ok = name in tables or name in columns or name in fields
        else:
            continue  # values (`village`, `6527`), commands, settings (checked elsewhere)
        if not ok:
            wrong.append(name)
    assert wrong == [], f"the glossary names what the code does not have: {wrong}"


def test_the_glossary_lists_every_step_role_and_workflow() -> None:
    from services.cases.workflow import Role, Step, Workflow

    text = _glossary()
    for value in (*Step, *Workflow):
        assert value.value in text, value
    for role in Role:
        assert role.value in text, role
    for term in ("**Roster**", "**Registry**", "**Household id**", "**Person key**", "**Region code**", "**Alert**",
                 "**Evidence**", "**Case alert**", "**Case**", "**Department**", "**Feed**", "**Channel**",
                 "**Source**"):
        assert term in text, term


# --- links: every relative link of README.md and docs/*.md resolves to a file (and heading) of the repository ----

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md")), *sorted((DOCS / "decisions").glob("*.md"))]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped (CJK kept), spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -" or "\u4e00" <= ch <= "\u9fff")
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _links(path: Path) -> list[tuple[str, str]]:
    """(target, anchor) of every link outside code blocks; web links left out."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    out = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        out.append((file, anchor))
    return out


def test_every_relative_link_resolves_to_a_file_of_the_repository() -> None:
    broken = []
    for page in _pages():
        for file, anchor in _links(page):
            target = (page.parent / file).resolve() if file else page
            where = f"{page.relative_to(ROOT)} -> {file}#{anchor}" if anchor else f"{page.relative_to(ROOT)} -> {file}"
            if not target.is_relative_to(ROOT):
                broken.append(f"{where}: outside the repository")
            elif not target.exists():
                broken.append(f"{where}: no such file")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{where}: no such heading")
    assert broken == [], "broken links:\n" + "\n".join(broken)


def test_the_link_check_finds_broken_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Top\n\nSee [a](a.md), [b](#top), [c](#nowhere), [d](https://example.org/x.md).\n"
                    "```\n[e](inside-a-code-block.md)\n```\n", encoding="utf-8")
    assert _links(page) == [("a.md", ""), ("", "top"), ("", "nowhere")]
    assert _anchors(page) == {"top"}
    assert _slug("The monitor: how the `risk` model runs") == "the-monitor-how-the-risk-model-runs"
    assert _slug("纳入监测 · 六个一") == "纳入监测--六个一"


# Paths written in backticks (`services/monitor/engine.py`) are pointers too: each names a file or directory that
# exists. Placeholders (`<dept>`, `*`, `…`) and what the programs write (var/) are not paths of the repository.
PATH_SPAN = re.compile(r"`((?:schemas|connectors|services|plumbing|bench|scripts|deploy|tests|docs|\.ci)/[^`\s]*)`")


def test_every_path_the_pages_name_exists() -> None:
    missing = []
    for page in _pages():
        for path in PATH_SPAN.findall(page.read_text(encoding="utf-8")):
            if re.search(r"[<>*…{}]|\.\.\.", path):
                continue
            if not (ROOT / path.split("::")[0].rstrip(".,:;")).exists():
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert missing == [], "pages name paths that do not exist:\n" + "\n".join(missing)


# --- README.md: an entry page whose commands are true -------------------------------------------------------------

README = ROOT / "README.md"


def test_the_readme_is_an_entry_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines: move reference text to docs/"


def test_the_readmes_first_commands_are_setup_then_demo_and_setup_then_the_tests_ci_runs() -> None:
    text = README.read_text(encoding="utf-8")
    commands = re.findall(r"^    (bash scripts/setup\.sh && .+)$", text, re.M)[:2]
    assert commands == ["bash scripts/setup.sh && .venv/bin/povwatch demo",
                        "bash scripts/setup.sh && .venv/bin/python -m pytest"]
    first = text.index(commands[0])
    assert text.index(commands[1]) < text.index("\n## "), "both commands come before the first section"
    assert first < 400, "the set-up command is among the README's first lines"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"'{commands[1]}'" in ci, ".ci/run runs exactly the README's test command"
    setup = (ROOT / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "-e '.[test]'" in setup and ".venv" in setup, "scripts/setup.sh makes .venv with the test extras"
    assert "povwatch = " in (ROOT / "pyproject.toml").read_text(encoding="utf-8"), "the povwatch command exists"


def test_the_readme_names_every_package_of_the_layout() -> None:
    text = README.read_text(encoding="utf-8")
    layout = text[text.index("## Layout"):]
    layout = layout[:layout.find("\n## ", 1)] if "\n## " in layout[1:] else layout
    top = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")
                 and p.name not in {"var", "build"} and not p.name.endswith(".egg-info") and p.name != "__pycache__")
    missing = [name for name in top if f"{name}/" not in layout]
    assert missing == [], f"top-level directories not in the README's layout: {missing}"
    services = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())
    missing = [name for name in services if f"{name}/" not in layout]
    assert missing == [], f"service packages not in the README's layout: {missing}"


def _pattern(node: ast.expr) -> str:
    """A regular expression for the text an expression of literals prints: values (and anything else) as wildcards."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.escape(node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(_pattern(part) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _pattern(node.left) + _pattern(node.right)
    return ".*?"


def _printed_lines(module: Path) -> list[re.Pattern[str]]:
    """A pattern per `print(...)` of a literal text in `module`."""
    calls = [node for node in ast.walk(ast.parse(module.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
             and node.args]
    patterns = [_pattern(call.args[0]) for call in calls]
    return [re.compile(p) for p in patterns if len(p.replace(".*?", "")) > 20]


DEMO_ENDING = ("alerts in the case DB as expected: yes; every feed's rows and every intake answer as generated: "
               "yes -> OK")


@pytest.mark.parametrize("page", ["README.md", "docs/operations.md"])
def test_the_demo_lines_the_pages_show_are_lines_the_demo_prints(page: str) -> None:
    """The README and docs/operations.md show how a demo run ends; every such line must be one services/demo/run.py
    prints (its figures aside), and both end on the verdict line."""
    text = (ROOT / page).read_text(encoding="utf-8")
    assert DEMO_ENDING in text
    patterns = _printed_lines(ROOT / "services" / "demo" / "run.py")
    assert any(p.fullmatch(DEMO_ENDING) for p in patterns), "the demo no longer ends on its verdict line"
    prefixes = ("alerts in the case DB", "cases open:", "facts kept by the monitor:", "rows as generated",
                "intake answers as expected")
    shown = [line.strip() for line in text.splitlines() if line.strip().startswith(prefixes)]
    assert shown
    for line in shown:
        assert any(p.fullmatch(line) for p in patterns), f"{page} shows a line the demo does not print: {line}"
