"""The shared alert vocabulary (schemas/alerts.py) is the Avro contract's, and the monitor re-exports it."""
from __future__ import annotations

import ast
from pathlib import Path

from schemas.alerts import Rule, Severity
from schemas.codec import default_codec

ROOT = Path(__file__).resolve().parents[2]


def _symbols(schema_name: str, field: str) -> list[str]:
    schema = default_codec().schema(schema_name)
    [wanted] = [f for f in schema["fields"] if f["name"] == field]
    symbols: list[str] = wanted["type"]["symbols"]
    return symbols


def test_rules_are_the_avro_rule_symbols() -> None:
    household = _symbols("povwatch.alerts.HouseholdAlert", "rule")
    regional = _symbols("povwatch.alerts.RegionalAlert", "rule")
    assert [r.value for r in Rule] == household + regional


def test_severities_are_the_avro_severity_symbols() -> None:
    assert [s.value for s in Severity] == _symbols("povwatch.alerts.HouseholdAlert", "severity")
    assert [s.value for s in Severity] == _symbols("povwatch.alerts.RegionalAlert", "severity")


def test_the_monitor_re_exports_the_same_enums() -> None:
    from services.monitor import rules

    assert rules.Rule is Rule and rules.Severity is Severity


def test_the_case_db_does_not_import_the_monitor() -> None:
    imported: set[str] = set()
    for path in (ROOT / "services" / "casedb").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.startswith("services.monitor")}
