"""The monitor's per-batch counting (services/monitor/metrics.py): a batch's increments and latencies applied at its
flush give the same series as one call per event, and the household stage's counts reach /metrics at flush."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.monitor.metrics import Tally, observe_many

BUCKETS = (0.05, 0.1, 1, 5)
AMOUNTS = [0.0, 0.05, 0.0500001, 0.1, 0.7, 1.0, 4.99, 5.0, 5.01, 3600.0, 0.2, 0.2]


def _series(registry: CollectorRegistry, name: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name.removeprefix(name), tuple(sorted(s.labels.items()))): s.value
            for family in registry.collect() if family.name == name for s in family.samples
            if not s.name.endswith("_created")}


def test_observe_many_gives_the_buckets_sum_and_count_of_one_observe_each() -> None:
    registry = CollectorRegistry()
    one, many = (Histogram(n, n, buckets=BUCKETS, registry=registry) for n in ("one", "many"))
    for amount in AMOUNTS:
        one.observe(amount)
    observe_many(many, AMOUNTS)
    observe_many(many, [])
    assert _series(registry, "many") == _series(registry, "one")
    assert _series(registry, "many")[("_bucket", (("le", "0.05"),))] == 2  # a bound is inside its bucket
    assert _series(registry, "many")[("_count", ())] == len(AMOUNTS)


def test_a_tally_counts_per_labelled_series_and_applies_once() -> None:
    registry = CollectorRegistry()
    counter = Counter("things", "things", ["rule", "severity"], registry=registry)
    tally = Tally()
    tally.add(counter, "DEATH", "HIGH")
    tally.add(counter, "DEATH", "HIGH", n=3)
    tally.add(counter, "JOB_LOSS", "MEDIUM")
    assert _series(registry, "things") == {}  # nothing before the flush
    tally.apply()
    assert _series(registry, "things") == {("_total", (("rule", "DEATH"), ("severity", "HIGH"))): 4.0,
                                           ("_total", (("rule", "JOB_LOSS"), ("severity", "MEDIUM"))): 1.0}
    tally.apply()  # applied once: a second flush adds nothing
    assert _series(registry, "things")[("_total", (("rule", "DEATH"), ("severity", "HIGH")))] == 4.0
