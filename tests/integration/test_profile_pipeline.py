"""The household profile end to end on the real broker, driven as an operator runs it: the roster loaded (`povwatch
roster load --delta`, the session broker is shared) and imported into a SQLite case DB (`povwatch cases roster`,
names stay there), two department files run through their connectors (the statistics survey team's household
income, below the line; housing's safety assessment, grade C), a real `povwatch monitor` and `povwatch casefeed`
as child processes. Then:

  * the monitor's profiles.household record reaches the case DB's household_profiles (the casefeed's profile
    consumer, group `<casefeed group>.profiles`, its offsets committed after the write), with the latest fact of
    each domain and the income;
  * no name and no ID number of the roster is in any profile message (key or value) on the topic;
  * `povwatch household show` prints the household with the connectors' Chinese headers and the roster's names,
    as text and as JSON;
  * `povwatch case advance CASE NOMINATE_NOTICE` is refused (exit 2, one line) with the plan's reasons (P70): the
    income below the county's line and the open HOUSING_UNSAFE alert;
  * a message on profiles.household that is not a profile is dead-lettered on dlq.casefeed with its position.

The test's own pseudonymisation key keeps its persons apart from other modules' on the shared broker; its consumer
groups start at the current end of the alert and profile topics.
"""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.orm import Session

from connectors.idcard import check_character
from plumbing.kafka_io import KafkaPublisher, ensure_topics, group_offsets, read_since, topic_end_offsets
from plumbing.processes import ChildProcess, metric, wait_until
from schemas.codec import default_codec
from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL, CASEFEED_DLQ, PROFILES_HOUSEHOLD
from services.casedb.database import open_database
from services.casedb.models import HouseholdProfile
from services.casefeed.profile_feed import PROFILE_SCHEMA, profiles_group
from services.cases.store import Cases
from tests.integration.test_desk_browser import _free_port

pytestmark = pytest.mark.integration

CODEC = default_codec()
VILLAGE = "652701100201"
TODAY = dt.date.today()
YEAR = TODAY.year - 1
PASSWORD = "profile-pipeline-password"


def _id(born: str, seq: int, male: bool) -> str:
    first17 = f"652701{born}{seq * 2 + (1 if male else 0):03d}"
    return first17 + check_character(first17)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


async def _start_at_end(bootstrap: str, group: str, topics: list[str]) -> None:
    ends = await topic_end_offsets(bootstrap, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(t, p) for t, p in ends])
        await consumer.commit({TopicPartition(t, p): offset for (t, p), offset in ends.items()})
    finally:
        await consumer.stop()


class Hub:
    def __init__(self, bootstrap: str, workdir: Path) -> None:
        run = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.workdir = workdir
        self.household = f"PF-{run}"
        self.url = f"sqlite:///{workdir / 'cases.db'}"
        self.group = f"it-profiles-{run}"
        self.casefeed_port = _free_port()
        self.env = {
            "POVWATCH_BOOTSTRAP": bootstrap, "POVWATCH_CASE_DB": self.url, "POVWATCH_MODE": "development",
            "POVWATCH_PSEUDONYM_KEY": f"profile-pipeline-key-{run}-0123456789",
            "POVWATCH_MONITOR_APP_ID": f"it-profile-monitor-{run}",
            "POVWATCH_MONITOR_METRICS_PORT": str(_free_port()),
            "POVWATCH_CASEFEED_GROUP": self.group, "POVWATCH_CASEFEED_METRICS_PORT": str(self.casefeed_port),
        }
        seq = int(run[:4], 16) % 400 + 100
        self.people = [("乌兰其其格", _id("19660412", seq, False), "女", "户主"),
                       ("巴音吉日嘎拉", _id("19920817", seq + 1, True), "男", "子")]
        asyncio.run(ensure_topics(bootstrap, 3))
        asyncio.run(_start_at_end(bootstrap, self.group, [ALERTS_HOUSEHOLD, ALERTS_REGIONAL]))
        asyncio.run(_start_at_end(bootstrap, profiles_group(self.group), [PROFILES_HOUSEHOLD]))
        self.start = asyncio.run(topic_end_offsets(bootstrap, [PROFILES_HOUSEHOLD, CASEFEED_DLQ]))
        self.children: list[ChildProcess] = []

    def cli(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        assert done.returncode == code, f"povwatch {' '.join(args)}: exit {done.returncode}\n{done.stderr}"
        assert "Traceback" not in done.stderr
        return done

    def files(self) -> dict[str, Path]:
        head_name, head_id = self.people[0][:2]
        roster = _write(self.workdir / "roster.csv",
                        ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态",
                         "劳动能力", "上年人均纯收入", "家庭人口数"],
                        [[self.household, name, number, sex, relation, VILLAGE, "脱贫不稳定户", "监测中",
                          "有劳动能力", "9800", "2"] for name, number, sex, relation in self.people])
        income = _write(self.workdir / "household-income.csv",
                        ["户主姓名", "户主身份证号码", "年度", "家庭人口数", "家庭纯收入", "人均纯收入", "工资性收入",
                         "经营净收入", "转移净收入", "财产净收入"],
                        [[head_name, head_id, str(YEAR), "2", "16400", "8200", "", "", "", ""]])
        house = _write(self.workdir / "house-safety.csv",
                       ["户主姓名", "户主身份证号码", "行政区划代码", "事由", "鉴定等级", "损毁程度", "日期"],
                       [[head_name, head_id, VILLAGE, "鉴定", "C", "严重损坏",
                         (TODAY - dt.timedelta(days=20)).isoformat()]])
        return {"roster": roster, "income": income, "house": house}

    def child(self, *args: str) -> ChildProcess:
        child = ChildProcess(list(args), env=self.env, log_path=self.workdir / f"{args[0]}.log")
        self.children.append(child)
        return child

    def stored(self) -> HouseholdProfile | None:
        store = open_database(self.url)
        try:
            with Session(store.engine, expire_on_commit=False) as session:
                return session.get(HouseholdProfile, self.household)
        finally:
            store.close()

    def profile_messages(self) -> list[Any]:
        async def read() -> list[Any]:
            return [r async for r in read_since(self.bootstrap, [PROFILES_HOUSEHOLD], self.start)]

        return asyncio.run(read())

    def dead_letters(self) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            return [CODEC.decode(r.value).record async for r in read_since(self.bootstrap, [CASEFEED_DLQ], self.start)]

        return asyncio.run(read())

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()


@pytest.fixture
def hub(broker: str, tmp_path: Path) -> Iterator[Hub]:
    h = Hub(broker, tmp_path)
    try:
        yield h
    finally:
        h.stop()


def _wait_for(what: str, check: Any, children: list[ChildProcess], timeout: float = 180) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in children:
            assert child.alive, f"povwatch {' '.join(child.args)} exited:\n{child.tail(40)}"
        found = check()
        if found:
            return found
        time.sleep(0.5)  # sleep-ok: the polling interval of a wait with a deadline
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(c.tail(20) for c in children))


def test_the_profile_through_the_broker_into_the_case_db(hub: Hub) -> None:
    files = hub.files()
    loaded = json.loads(hub.cli("roster", "load", str(files["roster"]), "--delta", "--json").stdout)
    assert loaded["rejected"] == 0
    hub.cli("cases", "roster", str(files["roster"]))
    store = open_database(hub.url)
    try:
        Cases(store).add_user("cun", "village", VILLAGE, PASSWORD)
    finally:
        store.close()
    for department, feed, path in (("statistics", "household-income", files["income"]),
                                   ("housing", "house-safety", files["house"])):
        summary = json.loads(hub.cli("connector", "run", department, feed, str(path), "--json").stdout)
        assert (summary["published"], summary["rejected"]) == (1, 0), summary
    monitor, casefeed = hub.child("monitor"), hub.child("casefeed")

    def complete() -> HouseholdProfile | None:
        row = hub.stored()
        return row if row is not None and {f["domain"] for f in row.facts} >= {"收入", "住房"} else None

    row = _wait_for("the household's profile in the case DB", complete, [monitor, casefeed])
    assert (row.village_code, row.income_year, str(row.income_per_capita)) == (VILLAGE, YEAR, "8200.00")
    house = next(f for f in row.facts if f["domain"] == "住房")
    assert (house["topic"], house["department"], house["feed"]) == ("events.housing.house-safety", "housing",
                                                                    "住房安全")
    assert (house["values"]["cause"], house["values"]["safety_grade"], house["values"]["damage"]) == (
        "ASSESSMENT", "C", "SERIOUS")

    # no name or ID number on the topic: every profile message of this household, key and value
    messages = [m for m in hub.profile_messages() if m.key == hub.household.encode()]
    assert messages and all(m.value for m in messages)
    for m in messages:
        record = CODEC.decode(m.value, PROFILE_SCHEMA).record
        assert record["household_id"] == hub.household
        for name, number, _, _ in hub.people:
            for secret in (name, number, number.lower(), number[:6] + number[8:17]):
                assert secret.encode() not in m.value and secret.encode() not in (m.key or b""), secret

    # the casefeed's profile group committed past this household's profiles, after writing them
    last = max(m.offset for m in messages)
    partition = messages[0].partition
    committed = _wait_for("the profile offsets committed", lambda: asyncio.run(group_offsets(
        hub.bootstrap, profiles_group(hub.group))).get((PROFILES_HOUSEHOLD, partition), 0) > last, [casefeed])
    assert committed

    # `povwatch household show`, text and JSON: Chinese headers, names from the case DB
    text = hub.cli("household", "show", hub.household).stdout
    lines = text.splitlines()
    assert lines[0] == f"户 {hub.household}  村 {VILLAGE}  监测中 · 脱贫不稳定户 · 有劳动能力 · 2 人"
    assert lines[1] == f"收入: 人均纯收入 8200 元 ({YEAR} 年, 统计局住户收入), 本县标准 9000 元: 低于标准"
    assert any(line.startswith("  户主  乌兰其其格  女  ") for line in lines)
    assert any(line.startswith("  住房  ") and "住建 · 住房安全  乌兰其其格 (户主)" in line for line in lines)
    assert any("事由 鉴定; 鉴定等级 C; 损毁程度 严重损坏" in line for line in lines)
    assert any(line.startswith(f"  收入  {YEAR}-01-01  统计 · ") for line in lines)
    data = json.loads(hub.cli("household", "show", hub.household, "--json", "--by", "cun").stdout)
    assert {a["rule"] for a in data["alerts"]} == {"INCOME_BELOW_LINE", "HOUSING_UNSAFE"}
    assert [m["name"] for m in data["members"]] == ["乌兰其其格", "巴音吉日嘎拉"]
    income_fact = next(f for f in data["facts"] if f["domain"] == "收入")
    assert {"label": "人均纯收入", "name": "per_capita_net_income", "value": "8200.00"} in income_fact["fields"]

    # risk elimination refused with the plan's reasons (P70), one line, exit 2
    refused = hub.cli("case", "advance", str(data["case_id"]), "NOMINATE_NOTICE", "--by", "cun", code=2)
    [line] = refused.stderr.strip().splitlines()
    assert line == (f"povwatch: error: case {data['case_id']}: NOMINATE_NOTICE refused: the income is not stable "
                    f"(P70): 人均纯收入 8200 元，低于 {YEAR} 年本县标准 9000 元; the guarantees are not consolidated "
                    "(P70): open alert(s) HOUSING_UNSAFE (住房安全); resolve them first")

    # a message on profiles.household that is not a profile: dead-lettered with its position, the feed goes on
    async def garbage() -> None:
        async with KafkaPublisher(hub.bootstrap, client_id="it-profiles") as publisher:
            await publisher.send(PROFILES_HOUSEHOLD, f"{hub.household}-garbage".encode(), b"\xc3\x01 not a profile")

    asyncio.run(garbage())
    wait_until(hub.casefeed_port, lambda s: metric(s, "povwatch_casefeed_profiles_total", outcome="dead_letter") >= 1,
               timeout=60, child=casefeed, what="the garbage dead-lettered")
    [bad] = [m for m in hub.profile_messages() if m.key == f"{hub.household}-garbage".encode()]
    letters = [d for d in hub.dead_letters() if (d.get("message") or {}).get("topic") == PROFILES_HOUSEHOLD]
    assert any(d["message"] == {"topic": PROFILES_HOUSEHOLD, "partition": bad.partition, "offset": bad.offset}
               and d["stage"] == "casefeed" and d["reasons"][0].startswith("undecodable: ") for d in letters), letters
    assert casefeed.alive and monitor.alive
