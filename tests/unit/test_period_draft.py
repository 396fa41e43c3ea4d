"""The windowed count of one period (services/monitor/rules.period_draft), slid over the records in date order,
gives exactly what the plain definition gives: every window starting on a record's date in the period, the records
up to `days` later, qualifying with `minimum` distinct households (or persons), the evidence every record of every
qualifying window. The definition is written out here as the reference; the records come in any order, or in date
order when the caller says so (`ordered`: only the period's own records are then looked at)."""
from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from services.monitor.rules import VillageRecord, period_draft

BASE = dt.date(2026, 1, 1).toordinal()


def reference(records: Sequence[VillageRecord], period: int, *, days: int, minimum: int,
              by_person: bool) -> tuple[dt.date, dt.date, tuple[str, ...], tuple[str, ...], int] | None:
    span = dt.timedelta(days=days)
    first = dt.date.fromordinal(max(1, period * (days + 1)))
    last = dt.date.fromordinal(period * (days + 1) + days)
    inside: dict[str, VillageRecord] = {}
    opened = None
    for start in sorted({r.disaster_date for r in records if first <= r.disaster_date <= last}):
        window = [r for r in records if start <= r.disaster_date <= start + span]
        members = {(r.person_key or r.household_id) if by_person else r.household_id for r in window}
        if len(members) >= minimum:
            opened = opened or start
            inside.update((r.event_id, r) for r in window)
    if opened is None:
        return None
    chosen = inside.values()
    return (opened, max(r.disaster_date for r in chosen), tuple(sorted({r.household_id for r in chosen})),
            tuple(sorted(inside)), len({(r.person_key or r.household_id) if by_person else r.household_id
                                        for r in chosen}))


records = st.lists(st.tuples(st.integers(0, 9), st.sampled_from(["p1", "p2", "p3", None]), st.integers(0, 60)),
                   max_size=40).map(lambda rows: [
                       VillageRecord(f"h{h}", f"e{i}", dt.date.fromordinal(BASE + day), person_key=person)
                       for i, (h, person, day) in enumerate(rows)])


@settings(max_examples=400, deadline=None)
@given(records, st.integers(0, 20), st.integers(1, 5), st.booleans(), st.randoms(use_true_random=False))
def test_sliding_the_windows_gives_the_definitions_draft(found: list[VillageRecord], days: int, minimum: int,
                                                         by_person: bool, rnd: random.Random) -> None:
    shuffled = list(found)
    rnd.shuffle(shuffled)
    periods = range((BASE - days - 1) // (days + 1), (BASE + 61) // (days + 1) + 1)
    for period in periods:
        expected = reference(found, period, days=days, minimum=minimum, by_person=by_person)
        assert period_draft("v", shuffled, period, days=days, minimum=minimum, by_person=by_person) == expected
        in_order = sorted(shuffled, key=lambda r: r.disaster_date)  # as the village stage's index keeps them
        assert period_draft("v", in_order, period, days=days, minimum=minimum, by_person=by_person,
                            ordered=True) == expected


def test_a_dense_period_is_one_pass() -> None:
    """5,000 records over 30 days in one village: every day starts a window (the old scan looked at every record
    for each of them); the draft still lists every household and event."""
    many = [VillageRecord(f"h{i % 700}", f"e{i}", dt.date.fromordinal(BASE + i % 30)) for i in range(5000)]
    period = BASE // 31
    found = period_draft("v", many, period, days=30, minimum=5)
    assert found == reference(many, period, days=30, minimum=5, by_person=False)
    assert found is not None and len(found[2]) == 700 and found[4] == 700
