"""What the runbook tests share (docs/runbook.md; tests/integration/test_runbook*.py): services started as the
units start them and waited for, the case feed run once and its totals line read, `povwatch status --json` and
`povwatch replay`'s table read back, and the cases of one prefix counted in the case DB."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from typing import Any

from plumbing.processes import ChildProcess
from services.casedb.database import open_database
from tests.integration.ops_world import World, free_port


def answers_at(port: int, path: str) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False
    return ready


def start_service(world: World, args: list[str], name: str, env: dict[str, str],
                  ready: Callable[[], bool]) -> ChildProcess:
    """`povwatch ARGS` as a child, returned once `ready()` (its /metrics or /healthz answers)."""
    child = ChildProcess(args, env={**world.env, **env}, log_path=world.workdir / f"{name}.log")
    deadline = time.monotonic() + 90
    while not ready():
        assert child.alive, f"{name} exited ({child.proc.returncode}):\n{child.tail()}"
        assert time.monotonic() < deadline, f"{name} not ready after 90 s:\n{child.tail()}"
        time.sleep(0.3)  # sleep-ok: the polling interval of a wait with a deadline
    return child


def prefix_cases(url: str, prefix: str) -> tuple[int, int, list[str]]:
    """(cases, evidence rows, alert ids) of this prefix's households in the case DB."""
    with open_database(url) as store:
        cases = [c for c in store.list_cases() if c.household_or_region.startswith(prefix)]
    alert_ids = sorted(e.alert_id for c in cases for e in c.evidence)
    return len(cases), len(alert_ids), alert_ids


def run_casefeed_once(world: World, env: dict[str, str]) -> dict[str, int]:
    """`povwatch casefeed --timeout 4`: everything there is, then stop; its totals line as numbers."""
    out = world.cli("casefeed", "--timeout", "4", env={**env, "POVWATCH_CASEFEED_METRICS_PORT": str(free_port())})
    line = out.strip().splitlines()[-1].split(":", 1)[1]
    return {k.strip().replace(" ", "_"): int(v) for k, v in re.findall(r"([a-zA-Z ]+?) (\d+)(?:,|$)", line)}


def replay_counts(out: str) -> dict[str, int]:
    """Messages to read again per topic, from the table `povwatch replay` prints."""
    found: Counter[str] = Counter()
    for line in out.splitlines():
        cells = line.split()
        if len(cells) == 6 and cells[-1].isdigit() and cells[2].isdigit():
            found[cells[1]] += int(cells[-1])
    return dict(found)


def assert_stops_cleanly(child: ChildProcess, name: str) -> None:
    code = child.stop(timeout=55)
    log = child.log_path.read_text(errors="replace")
    assert code == 0, f"{name} exited {code} on SIGTERM:\n{log[-2000:]}"
    assert "Traceback" not in log, log[-2000:]


def status_json(world: World, env: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(world.cli("status", "--json", env=env))
    return result


def topic_messages(status: dict[str, Any], topic: str) -> int:
    return int(next(t["messages"] for t in status["topics"] if t["name"] == topic))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)  # sleep-ok: the polling interval of a wait with a deadline
