"""Rolling the pseudonymisation key on the real broker (issue #13, item 7; docs/operations.md, "Roll the
pseudonymisation key"), as an operator does it through the command line:

    1. the roster and a department file under the old key; the monitor is not running, so those events are still
       in flight when the key changes;
    2. the new key, the old one as the previous key: the roster reloaded (every person under both keys), a second
       department file under the new key;
    3. the monitor joins both: the events under the old key and those under the new one raise their alerts;
    4. the previous key retired: the roster reloaded once more removes the persons under the old key.

Both keys are random per run (so are the event ids made from them) and live in 0600 files. The monitor's metrics
port is base + 972 (POVWATCH_TEST_BROKER_PORT).
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connectors.pseudonym import Pseudonymiser, key_id_of
from plumbing.kafka_io import read_compacted, read_since
from plumbing.processes import ChildProcess, wait_until
from schemas.codec import default_codec
from schemas.topics import ALERTS_HOUSEHOLD, REGISTRY_PERSONS
from tests.integration.scenario import build

pytestmark = pytest.mark.integration

MONITOR_PORT = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092")) + 972
CODEC = default_codec()


def _key_file(path: Path, key: str) -> Path:
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def _events(broker: str, topic: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        return [CODEC.decode(r.value).record async for r in read_since(broker, [topic], {})]
    return asyncio.run(read())


def test_rotate_then_join_events_under_either_key(broker: str, tmp_path: Path) -> None:
    scenario = build(tmp_path / "files")
    old_key, new_key = f"old-{secrets.token_hex(16)}", f"new-{secrets.token_hex(16)}"
    old_file, new_file = _key_file(tmp_path / "old.key", old_key), _key_file(tmp_path / "new.key", new_key)
    old_id, new_id = key_id_of(old_key.encode()), key_id_of(new_key.encode())
    env = {"POVWATCH_BOOTSTRAP": broker, "POVWATCH_AUDIT_INSTANCE": f"it-rotation-{old_id}",
           "POVWATCH_MONITOR_APP_ID": f"it-rotation-{old_id}", "POVWATCH_MONITOR_METRICS_PORT": str(MONITOR_PORT),
           "POVWATCH_MONITOR_SWEEP_SECONDS": "0.5"}
    outputs: list[str] = []

    def cli(keys: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env, **keys},
                              capture_output=True, text=True, timeout=180)
        outputs.extend([done.stdout, done.stderr])
        assert done.returncode == 0, f"povwatch {' '.join(args)}: {done.stderr}"
        return done

    before = {"POVWATCH_PSEUDONYM_KEY_FILE": str(old_file)}
    during = {"POVWATCH_PSEUDONYM_KEY_FILE": str(new_file), "POVWATCH_PSEUDONYM_PREVIOUS_KEY_FILE": str(old_file)}
    after = {"POVWATCH_PSEUDONYM_KEY_FILE": str(new_file)}
    feeds = {feed: (department, path) for department, feed, path in scenario.feeds}

    # 1. before the change: the roster and the registration changes under the old key
    cli(before, "topics", "ensure")
    cli(before, "roster", "load", str(scenario.roster))
    department, path = feeds["registration-change"]
    in_flight = json.loads(cli(before, "connector", "run", department, "registration-change", str(path),
                               "--json").stdout)["published"]

    # 2. the change: the roster under both keys, the dropouts under the new key
    reloaded = json.loads(cli(during, "roster", "load", str(scenario.roster), "--json").stdout)
    valid = reloaded["read"] - reloaded["rejected"] - reloaded["duplicates"]
    assert reloaded["published"] == valid and reloaded["persons"]["added"] == valid  # the new keys
    assert reloaded["persons"]["unchanged"] == valid  # the old ones stay
    persons = {k.decode(): CODEC.decode(v).record for k, v in asyncio.run(read_compacted(broker, REGISTRY_PERSONS))
               .items()}
    head = scenario.roster.read_text(encoding="utf-8-sig").splitlines()[1].split(",")[2]  # H01's 户主
    old_pk, new_pk = Pseudonymiser(old_key.encode()).person_key(head), Pseudonymiser(new_key.encode()).person_key(head)
    assert persons[old_pk]["household_id"] == persons[new_pk]["household_id"] == "H01"
    assert (persons[old_pk]["source"]["key_id"], persons[new_pk]["source"]["key_id"]) == (old_id, new_id)
    department, path = feeds["dropout"]
    fresh = json.loads(cli(during, "connector", "run", department, "dropout", str(path), "--json").stdout)["published"]

    registration = [e for e in _events(broker, f"events.{feeds['registration-change'][0]}.registration-change")
                    if e["source"]["key_id"] == old_id]
    dropouts = [e for e in _events(broker, f"events.{department}.dropout") if e["source"]["key_id"] == new_id]
    assert (len(registration), len(dropouts)) == (in_flight, fresh)
    ours = {e["event_id"] for e in registration + dropouts}

    # 3. the monitor joins events under either key
    monitor = ChildProcess(["monitor"], env={**os.environ, **env, **during}, log_path=tmp_path / "monitor.log")
    try:
        wait_until(MONITOR_PORT, lambda _: _alerts_about(broker, ours) >= 3, timeout=180, child=monitor,
                   what="the alerts of the events under both keys", interval=1.0)
    finally:
        monitor.stop()
    alerts = {(a["household_id"], a["rule"], a["severity"]) for a in _alerts(broker, ours)}
    assert {("H01", "DEATH_IN_HOUSEHOLD", "MEDIUM"), ("H02", "DEATH_IN_HOUSEHOLD", "HIGH")} <= alerts  # old key
    assert ("H01", "SCHOOL_DROPOUT", "HIGH") in alerts  # new key

    # 4. the change is over: the previous key retired, the persons under it removed
    done = json.loads(cli(after, "roster", "load", str(scenario.roster), "--json").stdout)
    assert done["persons"]["removed"] == valid and done["unchanged"] == valid
    left = asyncio.run(read_compacted(broker, REGISTRY_PERSONS))
    assert new_pk.encode() in left and old_pk.encode() not in left
    log = (tmp_path / "monitor.log").read_text(encoding="utf-8", errors="replace")
    assert not any(key in text for key in (old_key, new_key) for text in [*outputs, log])


def _alerts(broker: str, event_ids: set[str]) -> list[dict[str, Any]]:
    return [a for a in _events(broker, ALERTS_HOUSEHOLD) if set(a["event_ids"]) & event_ids]


def _alerts_about(broker: str, event_ids: set[str]) -> int:
    return len(_alerts(broker, event_ids))
