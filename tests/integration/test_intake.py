"""`povwatch intake` as an operator runs it: the real server in a child process against the real broker, driven
over real HTTP (urllib). What lands on events.intake.<channel> is read with aiokafka and decoded with nothing but
the .avsc files and fastavro, as a consumer outside this code base would."""
from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastavro.schema import load_schema

from connectors.idcard import check_character
from plumbing.kafka_io import ensure_topics
from plumbing.processes import ChildProcess
from schemas.catalog import intake_topics

pytestmark = pytest.mark.integration

AVSC = Path(__file__).resolve().parents[2] / "schemas" / "avro" / "povwatch.events.IntakeReport.avsc"
TOKENS = {"self-declaration": "it-self-token-0123456789", "cadre-visit": "it-cadre-token-0123456789",
          "social-clue": "it-clue-token-0123456789"}
HEAD = "65270119750611" + "471"
HEAD += check_character(HEAD)
REPORTER = "阿依古丽"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, channel: str, payload: Any, token: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/intake/{channel}", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def _wait_ready(port: int, child: ChildProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive:
            raise AssertionError(f"povwatch intake exited ({child.proc.returncode}):\n{child.tail(30)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)  # sleep-ok: the polling interval of a wait with a deadline
    raise AssertionError(f"povwatch intake not ready after {timeout:.0f}s:\n{child.tail(30)}")


async def _read_all(bootstrap: str, topics: tuple[str, ...]) -> list[tuple[str, bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # so partitions_for_topic() answers
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[str, bytes | None, bytes]] = []
        left = {tp for tp in tps if ends[tp] > 0}
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=1000)).items():
                for m in messages:
                    out.append((tp.topic, m.key, m.value or b""))
                    if m.offset + 1 >= ends[tp]:
                        left.discard(tp)
        assert not left, f"could not read {left} to the end"
        return out
    finally:
        try:  # aiokafka 0.14 re-raises its own internal task's cancellation when a group-less consumer stops
            await consumer.stop()
        except asyncio.CancelledError:
            pass


def _decode(value: bytes) -> dict[str, Any]:
    """With the .avsc file and fastavro only: skip the single-object header (C3 01 + 8-byte fingerprint)."""
    assert value[:2] == b"\xc3\x01"
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), load_schema(str(AVSC)))
    assert isinstance(record, dict)
    return record


@pytest.fixture(scope="module")
def intake(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    asyncio.run(ensure_topics(broker, 3))
    port = _free_port()
    env = {"POVWATCH_BOOTSTRAP": broker, "POVWATCH_INTAKE_PORT": str(port),
           "POVWATCH_INTAKE_TOKENS": json.dumps(TOKENS)}
    log = tmp_path_factory.mktemp("intake") / "intake.log"
    child = ChildProcess(["intake"], env=env, log_path=log)
    running = {"port": port, "child": child, "env": env, "log": log, "bootstrap": broker}
    try:
        _wait_ready(port, child)
        yield running
    finally:
        running["child"].stop()  # the one running now: a test may have restarted it


def _body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"head_id_number": HEAD, "risk_type": "因灾", "reporter": REPORTER,
                            "description": f"{REPORTER}家房屋被洪水冲毁, 联系电话13999887766, 身份证{HEAD}",
                            "reported_on": (dt.date.today() - dt.timedelta(days=1)).isoformat()}
    base.update(changes)
    return base


def _events(bootstrap: str) -> dict[str, list[tuple[str, bytes | None, dict[str, Any], bytes]]]:
    found: dict[str, list[tuple[str, bytes | None, dict[str, Any], bytes]]] = {}
    for topic, key, value in asyncio.run(_read_all(bootstrap, intake_topics())):
        record = _decode(value)
        found.setdefault(record["event_id"], []).append((topic, key, record, value))
    return found


def test_accepted_reports_land_once_pseudonymised(intake: dict[str, Any]) -> None:
    port = intake["port"]
    status, answer, _ = _post(port, "cadre-visit", _body(visit_result="存在风险", request_id="it-visit-1"),
                              TOKENS["cadre-visit"])
    assert status == 202, answer
    event_id = answer["event_id"]
    # the same request_id again: the same answer, nothing new published
    status2, answer2, headers2 = _post(port, "cadre-visit", _body(visit_result="存在风险", request_id="it-visit-1"),
                                       TOKENS["cadre-visit"])
    assert (status2, answer2) == (202, answer) and headers2.get("idempotent-replayed") == "true"
    status3, answer3, _ = _post(port, "social-clue", _body(head_id_number=None, household_id="BL-722101-0042",
                                                           clue_source="媒体", risk_type="饮水"),
                                TOKENS["social-clue"])
    assert status3 == 202, answer3

    events = _events(intake["bootstrap"])
    assert len(events[event_id]) == 1
    topic, key, record, raw = events[event_id][0]
    assert topic == "events.intake.cadre-visit"
    assert record["channel"] == "CADRE_SCREENING" and record["visit_result"] == "AT_RISK"
    assert record["risk_type"] == "DISASTER" and record["head_person_key"] and len(record["head_person_key"]) == 64
    assert key == record["head_person_key"].encode()
    assert record["description"] == "<name-redacted>家房屋被洪水冲毁, 联系电话<phone-redacted>, 身份证<id-redacted>"
    [(topic3, key3, record3, _)] = events[answer3["event_id"]]
    assert topic3 == "events.intake.social-clue" and key3 == b"BL-722101-0042"
    assert record3["household_id"] == "BL-722101-0042" and record3["clue_source"] == "MEDIA"
    # privacy: no raw ID number, no reporter name, no phone number in any intake message
    for entries in events.values():
        for _, _, _, value in entries:
            for secret in (HEAD, REPORTER, "13999887766"):
                assert secret.encode("utf-8") not in value


def test_tokens_and_invalid_bodies(intake: dict[str, Any]) -> None:
    port = intake["port"]
    before = sum(len(v) for v in _events(intake["bootstrap"]).values())
    body = _body()
    assert _post(port, "self-declaration", body, None)[0] == 401
    assert _post(port, "self-declaration", body, "not-a-token-0123456789")[0] == 401
    status, answer, _ = _post(port, "self-declaration", body, TOKENS["cadre-visit"])
    assert status == 403 and "self-declaration" in answer["detail"]
    status, answer, _ = _post(port, "self-declaration", _body(risk_type="生病", reported_on="2099-01-01",
                                                              head_id_number=HEAD[:-1] + "0" if HEAD[-1] != "0"
                                                              else HEAD[:-1] + "1"), TOKENS["self-declaration"])
    assert status == 422
    messages = {e["field"]: e["message"] for e in answer["errors"]}
    assert "因病" in messages["risk_type"] and "future" in messages["reported_on"]
    assert "check character" in messages["head_id_number"]
    assert _post(port, "self-declaration", b"{oops", TOKENS["self-declaration"])[0] == 422
    status, answer, _ = _post(port, "cadre-visit", body, TOKENS["cadre-visit"])
    assert status == 422 and answer["errors"] == [{"field": "visit_result", "message": "Field required"}]
    assert sum(len(v) for v in _events(intake["bootstrap"]).values()) == before
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    assert 'povwatch_intake_requests_total{channel="self-declaration",code="403"} 1.0' in text
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as response:
        assert "/v1/intake/social-clue" in json.loads(response.read())["paths"]


def test_a_replay_after_a_restart_publishes_nothing(intake: dict[str, Any], tmp_path: Path) -> None:
    port = intake["port"]
    status, first, _ = _post(port, "self-declaration", _body(request_id="it-restart-1"), TOKENS["self-declaration"])
    assert status == 202
    assert intake["child"].stop() == 0  # SIGTERM: a clean stop
    child = ChildProcess(["intake"], env=intake["env"], log_path=tmp_path / "intake2.log")
    intake["child"] = child
    _wait_ready(port, child)
    status, again, headers = _post(port, "self-declaration", _body(request_id="it-restart-1"),
                                   TOKENS["self-declaration"])
    assert (status, again) == (202, first) and headers.get("idempotent-replayed") == "true"
    assert len(_events(intake["bootstrap"])[first["event_id"]]) == 1


def test_start_up_errors_are_one_line(broker: str, intake: dict[str, Any]) -> None:
    base = {**os.environ, "POVWATCH_BOOTSTRAP": broker}
    cases = [
        ({"POVWATCH_INTAKE_TOKENS": "{not json"}, "POVWATCH_INTAKE_TOKENS is not valid JSON"),
        ({"POVWATCH_INTAKE_TOKENS": json.dumps(TOKENS), "POVWATCH_INTAKE_PORT": str(intake["port"])},
         "Address already in use"),
    ]
    for env, words in cases:
        result = subprocess.run([sys.executable, "-m", "services.cli", "intake"], env={**base, **env},
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("povwatch: error:")]
        assert len(errors) == 1 and words in errors[0], result.stderr
        assert "Traceback" not in result.stderr
