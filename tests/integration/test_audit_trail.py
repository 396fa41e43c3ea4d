"""The audit trail on the real broker (issue #13, item 5), driven through the command line as an operator runs it.

A roster load, two connector runs, the monitor raising alerts, intake requests (accepted and refused), case-DB
views and a refusal copied by `povwatch relay`: each leaves its records on `audit.events`, with the counts the
exchange had. Then `povwatch audit verify` over a copy, tampered in every way; a restarted party continuing its
chain; `povwatch audit household`; and the key, read from a 0600 file, never in any log or on any topic.

Every process of this module writes under the instance `it-audit-<run>` (POVWATCH_AUDIT_INSTANCE), so its chains
are its own on the shared session broker. Its HTTP ports are base + 970..979 (POVWATCH_TEST_BROKER_PORT).
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plumbing.audit_chain import record_hash
from plumbing.kafka_io import read_since
from plumbing.processes import ChildProcess, metric, wait_until
from schemas.topics import AUDIT_EVENTS
from services.audit_trail import read_trail
from services.demo.run import monitor_settled
from tests.integration.scenario import Scenario, build

pytestmark = pytest.mark.integration

BASE = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092"))
MONITOR_PORT, INTAKE_PORT = BASE + 970, BASE + 971
KEY = "audit-trail-test-key-7f3c9a1e5b2d"
TOKEN = "audit-trail-intake-token-0001"


class World:
    def __init__(self, broker: str, workdir: Path) -> None:
        self.broker = broker
        self.workdir = workdir
        self.scenario: Scenario = build(workdir / "files")
        self.instance = f"it-audit-{uuid.uuid4().hex[:8]}"
        key_file = workdir / "pseudonym.key"
        key_file.write_text(KEY + "\n", encoding="utf-8")
        key_file.chmod(0o600)
        self.env = {
            "POVWATCH_BOOTSTRAP": broker, "POVWATCH_AUDIT_INSTANCE": self.instance,
            "POVWATCH_PSEUDONYM_KEY_FILE": str(key_file), "POVWATCH_CASE_DB": f"sqlite:///{workdir / 'cases.db'}",
            "POVWATCH_MONITOR_APP_ID": f"it-audit-{self.instance}", "POVWATCH_MONITOR_METRICS_PORT": str(MONITOR_PORT),
            "POVWATCH_MONITOR_SWEEP_SECONDS": "0.5", "POVWATCH_RELAY_METRICS_PORT": "0",
            "POVWATCH_RELAY_GROUP": f"it-audit-relay-{self.instance}", "POVWATCH_INTAKE_PORT": str(INTAKE_PORT),
            "POVWATCH_INTAKE_TOKENS": json.dumps({"self-declaration": TOKEN}),
        }
        self.outputs: list[str] = []  # every command's stdout and stderr: searched for the key
        self.summaries: dict[str, dict[str, Any]] = {}
        self.intake_answers: list[tuple[int, dict[str, Any]]] = []

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=180)
        self.outputs += [done.stdout, done.stderr]
        if check and done.returncode != 0:
            raise AssertionError(f"povwatch {' '.join(args)} failed ({done.returncode}): {done.stderr}")
        return done

    def ours(self) -> list[dict[str, Any]]:
        """This module's records on the topic, in topic order."""
        trail = asyncio.run(read_trail(self.broker))
        return [r for _, r in trail.records if r["instance"] == self.instance]

    def post(self, body: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
        request = urllib.request.Request(f"http://127.0.0.1:{INTAKE_PORT}/v1/intake/self-declaration",
                                         data=json.dumps(body, ensure_ascii=False).encode(), method="POST",
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


def _healthz() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{INTAKE_PORT}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def world(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(broker, tmp_path_factory.mktemp("audit"))
    w.cli("topics", "ensure")
    w.summaries["roster"] = json.loads(w.cli("roster", "load", str(w.scenario.roster), "--json").stdout)
    monitor = ChildProcess(["monitor"], env=w.env, log_path=w.workdir / "monitor.log")
    intake = ChildProcess(["intake"], env=w.env, log_path=w.workdir / "intake.log")
    try:
        published = 0
        for department, feed, path in w.scenario.feeds[:2]:
            w.summaries[feed] = json.loads(w.cli("connector", "run", department, feed, str(path), "--json").stdout)
            published += w.summaries[feed]["published"]
        wait_until(INTAKE_PORT, lambda _: True, timeout=90, child=intake, what="the intake API")
        report = {"request_id": "audit-0001", "household_id": "H01", "reporter": "本人", "risk_type": "因病",
                  "description": "住院花费较大", "reported_on": "2025-06-01"}
        w.intake_answers.append(w.post(report, TOKEN))
        w.intake_answers.append(w.post(report, "not-a-valid-token-at-all"))
        samples = wait_until(MONITOR_PORT, monitor_settled(published + 1), timeout=120, child=monitor,
                             what="the monitor to settle")  # the connectors' events and the intake report
        w.alerts_raised = int(metric(samples, "povwatch_alerts_total"))
    finally:
        monitor.stop()
        intake.stop()
    w.outputs += [(w.workdir / "monitor.log").read_text(encoding="utf-8", errors="replace"),
                  (w.workdir / "intake.log").read_text(encoding="utf-8", errors="replace")]
    # the case DB: its roster, a bureau clerk who looks at H01, a village cadre elsewhere who is refused
    w.cli("cases", "roster", str(w.scenario.roster))
    password = w.workdir / "password"
    password.write_text("a-long-enough-password-123\n", encoding="utf-8")
    w.cli("users", "add", "clerk", "--role", "bureau", "--region", "6527", "--password-file", str(password))
    w.cli("users", "add", "cadre", "--role", "village", "--region", "652722102203", "--password-file", str(password))
    w.cli("household", "show", "H01", "--by", "clerk", "--password-file", str(password))
    w.refused = w.cli("household", "show", "H01", "--by", "cadre", "--password-file", str(password), check=False)
    w.relay = w.cli("relay", "--once").stdout
    yield w


def by_kind(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["kind"] == kind]


def test_each_exchange_leaves_its_record_with_its_counts(world: World) -> None:
    ours = world.ours()
    [roster] = by_kind(ours, "roster.load")
    assert roster["party"] == "connector.bureau"
    assert roster["counts"] == {k: world.summaries["roster"][k] for k in ("read", "published", "rejected",
                                                                          "duplicates")}
    runs = by_kind(ours, "connector.run")
    for (department, feed, path), run in zip(world.scenario.feeds[:2], runs, strict=True):
        assert run["party"] == f"connector.{department}" and run["details"]["feed"] == feed
        assert run["details"]["origin"] == path.name
        assert run["counts"] == {k: world.summaries[feed][k] for k in ("read", "published", "rejected", "duplicates")}
        assert run["details"]["key_id"] == roster["details"]["key_id"]
    raised = by_kind(ours, "alert.raised")
    assert raised and all(r["party"] == "monitor" for r in raised)
    assert sum(r["counts"]["household"] + r["counts"]["regional"] for r in raised) == world.alerts_raised > 0
    assert sum(len(r["subjects"]) for r in raised) == world.alerts_raised
    assert "household:H01" in {s for r in raised for s in r["subjects"]}


def test_intake_requests_accepted_and_refused_are_recorded(world: World) -> None:
    (status, answer), (refused, _) = world.intake_answers
    assert (status, refused) == (202, 401)
    requests = by_kind(world.ours(), "intake.request")
    assert [(r["party"], r["details"]["status"]) for r in requests] == [("intake", "202"), ("intake", "401")]
    assert requests[0]["details"]["event_id"] == answer["event_id"] and requests[0]["subjects"] == ["household:H01"]
    assert "event_id" not in requests[1]["details"] and requests[1]["subjects"] == []


def test_case_db_views_refusals_and_steps_are_copied_by_the_relay(world: World) -> None:
    assert world.refused.returncode != 0
    copied = [r for r in world.ours() if r["party"] == "casedb"]
    kinds = [r["kind"] for r in copied]
    assert "casedb.view_household" in kinds and "casedb.refused" in kinds and kinds.count("casedb.add_user") == 2
    rows = [int(r["details"]["audit_log_id"]) for r in copied]
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    assert f"audit log rows copied {len(copied)}" in world.relay
    looks = [r for r in copied if r["kind"] in ("casedb.view_household", "casedb.refused")]
    assert looks and all(r["details"]["user_id"].isdigit() for r in looks)  # the users table's id, not a name
    assert {"household:H01"} <= {s for r in copied for s in r["subjects"]}
    again = world.cli("relay", "--once").stdout  # nothing new: nothing copied twice
    assert "audit log rows copied 0" in again
    assert len([r for r in world.ours() if r["party"] == "casedb"]) == len(copied)


def test_a_restarted_party_continues_its_chain(world: World) -> None:
    department, feed, path = world.scenario.feeds[0]
    before = [r for r in world.ours() if r["party"] == f"connector.{department}"]
    world.cli("connector", "run", department, feed, str(path))
    after = [r for r in world.ours() if r["party"] == f"connector.{department}"]
    assert len(after) == len(before) + 1
    assert after[-1]["seq"] == before[-1]["seq"] + 1 and after[-1]["prev_hash"] == before[-1]["hash"]


def _our_copy(world: World, name: str) -> tuple[Path, list[dict[str, Any]]]:
    everything = world.workdir / "trail.jsonl"
    world.cli("audit", "export", str(everything))
    lines = [json.loads(line) for line in everything.read_text(encoding="utf-8").splitlines()]
    mine = [item for item in lines if item["record"]["instance"] == world.instance]
    path = world.workdir / name
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in mine), encoding="utf-8")
    return path, mine


def _verify(world: World, path: Path) -> tuple[int, dict[str, Any]]:
    done = world.cli("audit", "verify", "--from-file", str(path), "--json", check=False)
    return done.returncode, json.loads(done.stdout)


def test_verify_passes_the_intact_trail_and_finds_each_tampering(world: World) -> None:
    path, mine = _our_copy(world, "ours.jsonl")
    code, report = _verify(world, path)
    assert code == 0 and report["intact"] and {c["party"] for c in report["chains"]} >= {
        "monitor", "intake", "casedb", "connector.bureau"}
    assert sum(c["checked"] for c in report["chains"]) == len(mine)
    casedb = [i for i, item in enumerate(mine) if item["record"]["party"] == "casedb"]
    assert len(casedb) >= 3

    def tampered(kind: str) -> list[dict[str, Any]]:
        items = [json.loads(json.dumps(item)) for item in mine]
        first, second = casedb[0], casedb[1]
        if kind == "removed":
            del items[second]
        elif kind == "changed":
            items[second]["record"]["details"]["user_id"] = "999"
        elif kind == "reordered":
            items[first], items[second] = items[second], items[first]
        return items

    for kind in ("removed", "changed", "reordered"):
        bad = world.workdir / f"{kind}.jsonl"
        bad.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in tampered(kind)), encoding="utf-8")
        code, report = _verify(world, bad)
        broken = [c for c in report["chains"] if not c["ok"]]
        assert code == 1 and not report["intact"] and [c["party"] for c in broken] == ["casedb"], kind
        assert broken[0]["break"]["kind"] == kind
        text = world.cli("audit", "verify", "--from-file", str(bad), check=False).stdout
        assert f"BROKEN: {kind}" in text and "1 chain(s) broken" in text


def test_verify_reads_the_topic_itself(world: World) -> None:
    done = world.cli("audit", "verify", "--json", check=False)
    report = json.loads(done.stdout)
    mine = [c for c in report["chains"] if c["instance"] == world.instance]
    assert mine and all(c["ok"] for c in mine)
    assert done.returncode == (0 if report["intact"] else 1)


def test_household_shows_the_case_db_rows_and_the_exchanges(world: World) -> None:
    shown = json.loads(world.cli("audit", "household", "H01", "--json").stdout)
    assert {e["action"] for e in shown["case_db"]} >= {"VIEW_HOUSEHOLD", "REFUSED"}
    kinds = {(e["party"], e["kind"]) for e in shown["exchanges"] if e["instance"] == world.instance}
    assert {("monitor", "alert.raised"), ("intake", "intake.request"), ("casedb", "casedb.view_household")} <= kinds
    text = world.cli("audit", "household", "H01").stdout
    assert "exchanges on the audit trail" in text and "alert.raised" in text


def test_records_hold_no_name_no_id_number_and_the_key_is_never_shown(world: World) -> None:
    async def raw() -> list[bytes]:
        return [r.value for r in [rec async for rec in read_since(world.broker, [AUDIT_EVENTS], {})]]

    values = asyncio.run(raw())
    for value in values:
        text = value.decode("utf-8", errors="replace")
        assert not any(number in text for number in world.scenario.ids)
        assert not any(name in text for name in world.scenario.names)
        assert KEY not in text
    for record in world.ours():
        assert record_hash(record) == record["hash"]
    assert not any(KEY in output for output in world.outputs)
