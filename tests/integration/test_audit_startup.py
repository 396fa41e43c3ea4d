"""The monitor's start-up and its audit chain, on the session broker.

1. The stages do not wait for the audit chain's resume. `audit.events` holds a long tail of another party's chain
   (40,000 records), so resuming a new chain reads it back in several windows; the resume is also held after it
   has read the tail until the stages have their partitions (a monitor that waits for the resume before starting
   its stages never gets them: the test fails on its deadline). Then the first alert batch's record is written
   after the resume and `audit verify` finds the chain intact from seq 0.
2. Two workers of one app id on one host write two chains, not one forked chain: each claims its instance
   (`<host>`, `<host>-2`) in the run directory; both raise alerts; `audit verify` reports two chains, no break.
   The worker of `<host>` is restarted: it gets `<host>` back and continues its chain (a new chain from seq 0
   under the same name would be a `duplicated` break).

Each test writes as a party of its own (`POVWATCH_PARTY`), so its chains are its own on the shared broker. The
workers' `/metrics` are on base + 910 and + 911.
"""
from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

import plumbing.audit
from plumbing.audit_chain import Head, seal
from plumbing.audit_instance import default_instance, lock_path
from plumbing.clock import utc_now
from plumbing.kafka_io import ensure_topics
from plumbing.processes import ChildProcess, Samples, wait_until
from plumbing.settings import Settings
from schemas.codec import default_codec
from schemas.topics import AUDIT_EVENTS, AUDIT_TOPIC
from services.audit_trail import read_trail, verify_trail
from services.monitor.app import serve
from services.monitor.engine import StageRunner
from tests.integration.ops_world import World, households, monitor_behind, roster_file, stays_file

pytestmark = pytest.mark.integration

BASE = int(os.environ.get("POVWATCH_TEST_BROKER_PORT", "19092"))
WORKER_PORTS = (BASE + 910, BASE + 911)
TAIL = 40_000  # another party's records on audit.events: a new chain's resume reads them all back
CODEC = default_codec()


async def _fill_audit_tail(bootstrap: str, party: str, count: int) -> None:
    """`count` records of one valid chain of `party` (so `audit verify` over the whole topic stays intact)."""
    await ensure_topics(bootstrap, 1, [AUDIT_TOPIC])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        head, at, key, pending = Head(), utc_now(), f"{party}/filler".encode(), []
        for i in range(count):
            record = seal(head, party=party, instance="filler", at=at, kind="test.filler",
                          subjects=[f"household:F{i:06d}"], counts={"n": i}, details={})
            pending.append(await producer.send(AUDIT_EVENTS, CODEC.encode(plumbing.audit.AUDIT_SCHEMA, record),
                                               key=key))
            head = Head.after(record)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def _chains(bootstrap: str, party: str) -> list[dict[str, Any]]:
    reports, _ = verify_trail(asyncio.run(read_trail(bootstrap)))
    return sorted((r.as_dict() for r in reports if r.party == party), key=lambda r: str(r["instance"]))


async def _chains_async(bootstrap: str, party: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_chains, bootstrap, party)


def test_the_stages_get_their_partitions_while_the_audit_chain_is_still_resuming(
        broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = uuid.uuid4().hex[:8]
    party, app = f"monitor-startup-{run}", f"startup-{run}"
    settings = Settings(bootstrap=broker, kafka_data=tmp_path / "kafka", monitor_app_id=app,  # type: ignore[call-arg]
                        monitor_sweep_seconds=0.5, monitor_metrics_port=0, party=party, run_dir=tmp_path / "run")
    world = World(settings, tmp_path)
    read_last = plumbing.audit.read_last
    gate = asyncio.Event()
    times: dict[str, float] = {}

    async def held_read_last(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
        began = time.monotonic()
        found = await read_last(*args, **kwargs)  # the real resume, over the long tail
        times["read"] = time.monotonic() - began
        await gate.wait()  # and held until the stages have their partitions
        return found

    monkeypatch.setattr(plumbing.audit, "read_last", held_read_last)

    async def run_monitor() -> tuple[float, list[dict[str, Any]]]:
        await _fill_audit_tail(broker, f"startup-filler-{run}", TAIL)
        stopping = asyncio.Event()
        runners: list[StageRunner[Any]] = []
        began = time.monotonic()
        task = asyncio.create_task(serve(settings, stopping, runners_out=runners))
        try:
            while not (runners and all(r.assigned() for r in runners)):
                if task.done():
                    task.result()
                assert time.monotonic() - began < 90, ("the stages got no partitions while the audit chain's "
                                                       "resume was held: the monitor waits for it")
                await asyncio.sleep(0.05)  # sleep-ok: the polling interval of a wait for a condition
            assigned = time.monotonic() - began  # the resume is not over: its gate is still shut
            gate.set()
            hhs = households(f"SU{run[:4]}", 20, members=2)
            people = [p for h in hhs for p in h.members]
            await asyncio.to_thread(world.roster, roster_file(tmp_path / "roster.csv", hhs))
            await asyncio.to_thread(world.publish, "medical-security", "hospitalization",
                                    stays_file(tmp_path / "stays.csv", people, 1))
            deadline = time.monotonic() + 180
            while True:
                if task.done():
                    task.result()
                    raise AssertionError("the monitor stopped")
                chains = await _chains_async(broker, party)
                if chains and not await monitor_behind(settings):
                    chains = await _chains_async(broker, party)  # everything committed: its records are out
                    break
                assert time.monotonic() < deadline, f"no audit record of {party} after 180 s: {chains}"
                await asyncio.sleep(0.5)  # sleep-ok: the polling interval of a wait with a deadline
        finally:
            stopping.set()
            gate.set()
            await asyncio.gather(task, return_exceptions=True)
        if task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        return assigned, chains

    assigned, chains = asyncio.run(run_monitor())
    print(f"\n| stages assigned after start | resume's own read of the tail ({TAIL:,} records) |\n|---|---|\n"
          f"| {assigned:.1f} s | {times.get('read', float('nan')):.1f} s |")
    assert "read" in times, "the chain never resumed"
    [chain] = chains
    assert chain["instance"] == default_instance()  # the first free instance of the run directory
    assert chain["ok"] and chain["first_seq"] == 0 and chain["checked"] >= 1, chain


def _assigned(stage: str) -> Callable[[Samples], bool]:
    def done(samples: Samples) -> bool:
        return samples.get(("povwatch_monitor_partitions_assigned", (("stage", stage),)), 0) >= 1
    return done


def _holder(run_dir: Path, party: str, instance: str) -> int:
    return int(lock_path(run_dir, party, instance).read_text(encoding="ascii").strip())


def test_two_workers_on_one_host_write_two_chains_and_a_restarted_one_continues_its_own(
        broker: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    party, app, host = f"monitor-pair-{run}", f"pair-{run}", default_instance()
    run_dir = tmp_path / "run"
    settings = Settings(bootstrap=broker, kafka_data=tmp_path / "kafka", monitor_app_id=app)  # type: ignore[call-arg]
    world = World(settings, tmp_path)
    env = {**world.env, "POVWATCH_MONITOR_APP_ID": app, "POVWATCH_PARTY": party, "POVWATCH_RUN_DIR": str(run_dir)}

    def worker(n: int, name: str) -> ChildProcess:
        child = ChildProcess(["monitor"], env={**env, "POVWATCH_MONITOR_METRICS_PORT": str(WORKER_PORTS[n])},
                             log_path=tmp_path / f"{name}.log")
        world.monitors.append(child)
        return child

    def both_assigned(workers: list[ChildProcess]) -> None:
        for n, child in enumerate(workers):
            wait_until(WORKER_PORTS[n], _assigned("household"), timeout=120, child=child,
                       what="household partitions")

    def raise_alerts(prefix: str) -> None:
        hhs = households(prefix, 30, members=2)
        people = [p for h in hhs for p in h.members]
        world.roster(roster_file(tmp_path / f"{prefix}-roster.csv", hhs))
        world.publish("medical-security", "hospitalization", stays_file(tmp_path / f"{prefix}-stays.csv", people))
        world.wait_alerts(prefix, len(people), timeout=180, alive=lambda: all(m.alive for m in world.monitors))
        deadline = time.monotonic() + 120
        while late := world.monitor_behind(app):  # committed: every batch's audit record is acknowledged
            assert time.monotonic() < deadline, f"the workers are still behind: {late[:4]}"
            time.sleep(0.2)  # sleep-ok: the polling interval of a wait with a deadline

    try:
        first, second = worker(0, "worker-a"), worker(1, "worker-b")
        both_assigned([first, second])
        raise_alerts(f"PA{run[:4]}")
        chains = _chains(broker, party)
        print("\nafter the first alerts:", [(c["instance"], c["checked"], c["last_seq"], c["ok"]) for c in chains])
        assert [c["instance"] for c in chains] == sorted([host, f"{host}-2"]), chains
        assert all(c["ok"] and c["first_seq"] == 0 for c in chains), chains  # no `duplicated`: no fork
        before = {c["instance"]: c for c in chains}
        # restart the worker of <host> (its pid is in its lock file): it gets <host> back, the other keeps <host>-2
        holder = _holder(run_dir, party, host)
        index = [m.proc.pid for m in (first, second)].index(holder)
        assert (first, second)[index].stop() == 0
        workers = [first, second]
        workers[index] = worker(index, f"worker-{'ab'[index]}-again")
        both_assigned(workers)
        assert _holder(run_dir, party, host) == workers[index].proc.pid
        raise_alerts(f"PB{run[:4]}")
        after = {c["instance"]: c for c in _chains(broker, party)}
        print("after the restart:", [(i, c["checked"], c["last_seq"], c["ok"]) for i, c in sorted(after.items())])
        assert sorted(after) == sorted([host, f"{host}-2"]), after
        assert all(c["ok"] and c["first_seq"] == 0 for c in after.values()), after
        assert after[host]["last_seq"] > before[host]["last_seq"], (before, after)  # continued its own chain
    finally:
        world.stop_all()
