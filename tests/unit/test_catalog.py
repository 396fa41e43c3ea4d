"""The topic catalogue (schemas/catalog.py) is the one list of feeds and topics: connectors take their identity
from it, services build their topic lists from it, and the wire layer depends on nothing above it."""
from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.catalog import EVENT_FEEDS, ROSTER, connectors_by_feed, get_feed
from plumbing.kafka_io import project_topics
from schemas import catalog
from schemas.codec import default_codec
from schemas.errors import UnknownFeed

ROOT = Path(__file__).resolve().parents[2]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_schemas_import_nothing_of_connectors_or_services() -> None:
    for path in sorted((ROOT / "schemas").glob("*.py")):
        above = {m for m in _imported_modules(path) if m.split(".")[0] in ("connectors", "services")}
        assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}"


def test_kafka_io_does_not_load_the_connectors() -> None:
    code = ("import sys, plumbing.kafka_io; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'connectors'); "
            "print(','.join(loaded))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"plumbing.kafka_io loads {result.stdout.strip()}"


def test_every_catalogue_feed_names_an_avro_record_and_its_topic() -> None:
    codec = default_codec()
    for feed in (*catalog.EVENT_FEEDS, catalog.ROSTER):
        assert codec.schema(feed.schema)["type"] == "record", feed
        assert feed.dlq == f"dlq.{feed.department}"
    assert [f.topic for f in catalog.EVENT_FEEDS] == [f"events.{f.department}.{f.feed}" for f in catalog.EVENT_FEEDS]
    assert catalog.ROSTER.topic == "registry.persons"
    assert len(set(catalog.EVENT_FEEDS)) == len(catalog.EVENT_FEEDS)


def test_connectors_follow_the_catalogue() -> None:
    assert list(EVENT_FEEDS) == [(f.department, f.feed) for f in catalog.EVENT_FEEDS]
    for feed in catalog.EVENT_FEEDS:
        spec = get_feed(feed.department, feed.feed)
        assert spec.wire is feed
        assert (spec.department, spec.feed, spec.schema, spec.topic, spec.dlq) == (
            feed.department, feed.feed, feed.schema, feed.topic, feed.dlq)
    assert ROSTER.wire is catalog.ROSTER
    with pytest.raises(UnknownFeed, match="unknown feed medical-security dialysis"):
        get_feed("medical-security", "dialysis")


def test_a_catalogue_feed_without_a_connector_is_refused() -> None:
    some = tuple(spec for spec in EVENT_FEEDS.values() if spec.feed != "dropout")
    with pytest.raises(ValueError, match="without a connector: education dropout"):
        connectors_by_feed(some)


def test_a_connector_outside_the_catalogue_or_twice_is_refused() -> None:
    specs = tuple(EVENT_FEEDS.values())
    stray = dataclasses.replace(specs[0], wire=catalog.Feed("health", "vaccination", "povwatch.events.Dropout",
                                                             "events.health.vaccination"))
    with pytest.raises(ValueError, match="health vaccination: not an event feed"):
        connectors_by_feed((*specs, stray))
    with pytest.raises(ValueError, match="two connectors for public-security registration-change"):
        connectors_by_feed((*specs, specs[0]))


def test_project_topics_come_from_the_catalogue() -> None:
    specs = project_topics()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    assert names[:2] == ["registry.persons", "registry.households"]
    assert [s.name for s in specs if s.compacted] == ["registry.persons", "registry.households",
                                                      "registry.household-status", "profiles.household"]
    # the status topic is partitioned like the registry: the monitor's household stage reads both as tables
    [status] = [s for s in specs if s.name == "registry.household-status"]
    assert status.partitions is None
    assert [n for n in names if n.startswith("events.")] == [*catalog.event_topics(), *catalog.intake_topics(),
                                                             *catalog.comparison_result_topics()]
    assert {f"dlq.{d}" for d in catalog.departments()} | {"dlq.monitor"} <= set(names)
    assert {"alerts.household", "alerts.regional"} <= set(names)
    # the seventeen departments of the plan that push data (the feed contract), and the bureau's roster
    assert catalog.departments() == sorted([
        "bureau", "cac", "education", "public-security", "civil-affairs", "hrss", "housing", "natural-resources",
        "water", "agriculture", "health", "medical-security", "pboc", "disabled-federation", "market-regulation",
        "statistics", "farm-machinery", "emergency"])
