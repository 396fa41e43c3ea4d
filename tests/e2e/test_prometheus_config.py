"""deploy/prometheus/: the scrape config and alert rules, checked with promtool.

promtool comes from Debian's `prometheus` package: `deploy/install-promtool.sh` installs it. Without it these
tests fail (they never skip): an unchecked rules file is how alerts silently stop working.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
CONFIG = PROM / "prometheus.yml"
RULES = PROM / "rules" / "povwatch.rules.yml"
RULES_TEST = PROM / "rules" / "povwatch.rules.test.yml"

# Sample names prometheus_client exposes for a family of each type (counters get `_total`; `_created` unless
# PROMETHEUS_DISABLE_CREATED_SERIES is set). Needed because a labelled metric yields no sample before its first
# `.labels(...)` call, so collect() alone would not show it.
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def _promtool() -> str:
    """promtool's path; fails the calling test (never skips it) when it is missing."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: run deploy/install-promtool.sh "
                    "(installs Debian's prometheus package, which ships /usr/bin/promtool)", pytrace=False)
    return path


def _run(*args: str) -> str:
    proc = subprocess.run([_promtool(), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"promtool {' '.join(args)} exited {proc.returncode}:\n{output}"
    assert "SUCCESS" in output, f"promtool {' '.join(args)} did not report SUCCESS:\n{output}"
    return output


def _code_lines(path: Path) -> str:
    """The file without its comment lines (comments may mention names that are not used)."""
    return "\n".join(line for line in path.read_text(encoding="utf-8").splitlines()
                     if not line.lstrip().startswith("#"))


def test_check_config() -> None:
    output = _run("check", "config", str(CONFIG.relative_to(ROOT)))
    assert "1 rule files found" in output, output


def test_check_rules() -> None:
    _run("check", "rules", str(RULES.relative_to(ROOT)))


def test_rule_unit_tests() -> None:
    _run("test", "rules", str(RULES_TEST.relative_to(ROOT)))


def test_every_alert_has_a_unit_test() -> None:
    rules = set(re.findall(r"^\s*- alert:\s*(\S+)\s*$", _code_lines(RULES), re.M))
    tested = set(re.findall(r"^\s*alertname:\s*(\S+)\s*$", _code_lines(RULES_TEST), re.M))
    assert rules, "no alert found in the rules file"
    assert rules - tested == set(), f"alerts without a promtool unit test: {sorted(rules - tested)}"
    assert tested - rules == set(), f"unit tests of alerts that do not exist: {sorted(tested - rules)}"


def test_every_alert_is_annotated_and_has_a_severity() -> None:
    blocks = re.split(r"^\s*- alert:", _code_lines(RULES), flags=re.M)[1:]
    assert blocks
    for block in blocks:
        name = block.split()[0]
        assert re.search(r"^\s*severity:\s*(critical|warning|info)\s*$", block, re.M), f"{name}: no severity"
        assert re.search(r"^\s*summary:\s*\S", block, re.M), f"{name}: no summary annotation"
        assert re.search(r"^\s*description:\s*\S", block, re.M), f"{name}: no description annotation"


def _exported_sample_names() -> set[str]:
    import services.casefeed.service  # noqa: F401  (registers the casefeed's metrics)
    import services.cases.relay  # noqa: F401  (registers the relay's metrics)
    import services.monitor.metrics  # noqa: F401  (registers the monitor's metrics)

    names: set[str] = set()
    family: Metric
    for family in REGISTRY.collect():
        if not family.name.startswith("povwatch_"):
            continue
        derived = {family.name + suffix for suffix in _SUFFIXES[family.type]}
        sampled = {sample.name for sample in family.samples}
        assert sampled <= derived, f"{family.name}: samples {sampled} not among the names expected of a {family.type}"
        names |= derived
    return names


def test_rule_metrics_are_exported() -> None:
    exported = _exported_sample_names()
    assert {"povwatch_monitor_dead_letters_total", "povwatch_event_latency_seconds_bucket",
            "povwatch_casefeed_dead_letters_total"} <= exported  # the walk found both modules' metrics
    used = set(re.findall(r"\bpovwatch_[a-z0-9_]+\b", _code_lines(RULES)))
    assert used, "the rules use no povwatch_ metric"
    missing = sorted(used - exported)
    assert not missing, (f"the rules use metrics that no povwatch process exports: {missing}; "
                         f"exported: {sorted(exported)}")


def test_rule_jobs_are_scraped() -> None:
    config = _code_lines(CONFIG)
    jobs = set(re.findall(r"^\s*- job_name:\s*(\S+)\s*$", config, re.M))
    assert jobs == {"povwatch-monitor", "povwatch-casefeed", "povwatch-intake", "povwatch-connector",
                    "povwatch-relay"}
    used = set(re.findall(r'\bjob\s*=~?\s*"([^"]+)"', _code_lines(RULES)))
    assert used and used <= jobs, f"rules select jobs {sorted(used)}; the config scrapes {sorted(jobs)}"


def test_scrape_targets_match_the_metrics_ports() -> None:
    from plumbing.settings import Settings

    config = _code_lines(CONFIG)
    assert re.search(r"^\s*scrape_interval:\s*15s\s*$", config, re.M), "scrape_interval should be 15s"
    for job, field in (("povwatch-monitor", "monitor_metrics_port"), ("povwatch-casefeed", "casefeed_metrics_port"),
                       ("povwatch-intake", "intake_port"), ("povwatch-relay", "relay_metrics_port")):
        port = Settings.model_fields[field].default
        block = re.search(rf"- job_name:\s*{job}\s*\n(.*?)(?=^\s*- job_name:|\Z)", config, re.M | re.S)
        assert block is not None, f"no scrape job {job}"
        assert f'"127.0.0.1:{port}"' in block.group(1), f"{job} should scrape 127.0.0.1:{port} ({field})"
