"""bench/engines.py's check on a candidate run as a child process: only a candidate whose counts add up to every
event posts a figure (a real child writing the result file, as bench/engines_frameworks.py does)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))  # bench/ is scripts, not a package

import engines  # noqa: E402

# a child that writes the given result where --result points, then exits with the given code
CHILD = ("import json, sys; args = sys.argv[1:]; result = json.loads(args[0]); "
         "open(args[args.index('--result') + 1], 'w').write(json.dumps(result)); sys.exit(int(args[1]))")


def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, result: dict[str, Any] | None, code: int = 0,
        events: int = 100) -> engines.Outcome:
    monkeypatch.setattr(engines, "RUN", tmp_path)
    args = ["-c", CHILD if result is not None else "import sys; print('boom'); sys.exit(1)",
            json.dumps(result), str(code)]
    return engines.run_child("quix", "a candidate", Path(sys.executable), args, "127.0.0.1:1", "events.x", events,
                             3, 60, {})


def tally(decoded: int, updated: int, state_total: int, complete: bool = True) -> dict[str, Any]:
    return {"candidate": "quix", "complete": complete, "events": 100, "decoded": decoded, "updated": updated,
            "households": 10, "state_total": state_total, "seconds": 2.0}


def test_a_candidate_that_handled_every_event_posts_its_figure(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    got = run(tmp_path, monkeypatch, tally(100, 100, 100))
    assert got.ok and got.events == 100 and got.seconds == 2.0 and got.problem == ""


@pytest.mark.parametrize("counts, why", [
    ((100, 100, 10), "state adds up to 10"),  # the state did not keep its updates (each count read back as 1)
    ((100, 90, 90), "updated 90"),  # events lost between the stages
    ((120, 120, 120), "decoded 120"),  # events repeated
])
def test_a_candidate_that_lost_or_repeated_events_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        counts: tuple[int, int, int], why: str) -> None:
    got = run(tmp_path, monkeypatch, tally(*counts))
    assert not got.ok and got.seconds is None and why in got.problem


def test_an_incomplete_or_crashed_candidate_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stalled = run(tmp_path, monkeypatch, {**tally(50, 40, 40, complete=False), "stalled_s": 60.0}, code=3)
    assert not stalled.ok and "no progress for 60 s" in stalled.problem and stalled.events == 40
    crashed = run(tmp_path, monkeypatch, None)
    assert not crashed.ok and "exited 1 without a result" in crashed.problem and "boom" in crashed.problem


def test_the_report_shows_a_failed_candidate_without_a_figure() -> None:
    raw = engines.Outcome("raw", "raw", 100, 1.0, True, "", {"runs_s": [1.0, 1.0, 1.0]})
    bad = engines.Outcome("quix", "quix", 40, None, False, "decoded 50, updated 40")
    text = engines.report({"events": 100, "households": 200, "topic": "t", "partitions": 3,
                           "candidates": [engines.asdict(raw), engines.asdict(bad)],
                           "machine": {"cores": 2, "python": "3.11", "kafka": "4.1.1"}})
    row = next(line for line in text.splitlines() if line.startswith("quix"))
    assert row.split()[-1] == "FAILED" and "40 of 100" in row
    assert "quix: decoded 50, updated 40" in text
