"""Group a's feeds through the real broker, as an operator runs them (`povwatch connector run ... --json`): one
file of good and bad rows per feed, at least one feed for each of cac, education, public-security, civil-affairs,
hrss, housing, natural-resources, water and agriculture (here: all twelve feeds).

The event and dead-letter topics are read back and decoded with nothing but the `.avsc` files and fastavro: the
single-object encoding (C3 01, the CRC-64-AVRO fingerprint of the writer schema, little-endian, then the body) is
taken apart here, the fingerprint computed here from the schema's Parsing Canonical Form. Counts (read = published
+ rejected), values, keys by link, and no name or ID number of the input in any message on those topics.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fastavro
import pytest
from fastavro.schema import load_schema, to_parsing_canonical_form

from plumbing.kafka_io import Record, read_topic
from tests.unit.doubles import make_id, write_csv

pytestmark = pytest.mark.integration

AVRO_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"
KEY = "integration-test-pseudonym-key-group-a"
VILLAGE = "652701100201"
OTHER_VILLAGE = "652701100202"
MAN = make_id("652701", "19650910", 71)
WOMAN = make_id("652701", "19781120", 22)
GIRL = make_id("652701", "20120915", 42)
BOY = make_id("652701", "20100302", 17)
OLD = make_id("652722", "19480303", 91)
NAMES = ["王建国", "马桂英", "张小红", "李小军", "赵老汉"]
THIS_YEAR = dt.datetime.now(ZoneInfo("Asia/Shanghai")).year  # 年度 may go up to the prefecture's current year
IDS = [MAN, WOMAN, GIRL, BOY, OLD]


def person_key(id18: str) -> str:
    return hmac.new(KEY.encode(), id18.encode("ascii"), hashlib.sha256).hexdigest()


def bad_check(id18: str) -> str:
    return id18[:17] + ("1" if id18[17] != "1" else "2")


# --- decoding with the .avsc files and fastavro alone ---------------------------------------------------------

_POLY = 0xC15D213AA4D7A795  # CRC-64-AVRO (Avro specification, "Schema Fingerprints")
_TABLE = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_POLY & -(_fp & 1))
    _TABLE.append(_fp)


def crc64_avro(data: bytes) -> int:
    fp = 0xC15D213AA4D7A795  # the empty fingerprint
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


def _schemas() -> dict[bytes, tuple[str, Any]]:
    """Every current .avsc by its fingerprint, as it appears on the wire (8 bytes, little-endian)."""
    out = {}
    for path in AVRO_DIR.glob("*.avsc"):
        parsed = load_schema(str(path))
        canonical = to_parsing_canonical_form(parsed).encode("utf-8")
        out[struct.pack("<Q", crc64_avro(canonical))] = (path.name[: -len(".avsc")], parsed)
    return out


SCHEMAS = _schemas()


def decode(value: bytes) -> tuple[str, dict[str, Any]]:
    assert value[:2] == b"\xc3\x01", "not Avro single-object encoding"
    name, schema = SCHEMAS[value[2:10]]
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
    assert isinstance(record, dict)
    return name, record


# --- the files ------------------------------------------------------------------------------------------------


@dataclass
class Case:
    department: str
    feed: str
    schema: str
    link: str
    rows: list[list[str]]  # header first
    published: int
    rejected: int
    reasons: dict[int, list[str]]  # row -> reasons, as the summary and the dead letter give them
    keys: list[str]  # message key of each event, in row order
    values: list[dict[str, Any]]  # expected fields of each event (a subset), in row order
    summary: dict[str, Any] = field(default_factory=dict)


def cases(run: str) -> list[Case]:
    """One file per feed: good rows, and bad rows with the reason each is rejected for."""
    return [
        Case("cac", "public-opinion", "povwatch.events.PublicOpinion", "village", [
            ["线索编号", "发现日期", "来源平台", "行政区划代码", "涉及人员身份证号码", "风险类型", "线索摘要"],
            [f"{run}-1", "2024-03-15", "抖音", VILLAGE, MAN, "因病", f"户主重病住院, 身份证{MAN}, 电话13800138000"],
            [f"{run}-2", "2024/3/16", "论坛", OTHER_VILLAGE, "", "饮水", "全村停水三天"],
            [f"{run}-3", "2024-03-17", "小红书", VILLAGE, bad_check(WOMAN), "因病", "x"],
        ], 2, 1, {4: ["platform: unknown value '小红书' (expected one of 微博 / 微信 / 抖音 / 新闻网站 / 论坛 / 其他)",
                      f"person_id_number: invalid ID number: check character is {bad_check(WOMAN)[17]}, "
                      f"expected {WOMAN[17]}"]},
            [person_key(MAN), OTHER_VILLAGE],
            [{"platform": "DOUYIN", "risk_type": "ILLNESS", "village_code": VILLAGE, "person_key": person_key(MAN),
              "summary": "户主重病住院, 身份证<id-redacted>, 电话<phone-redacted>", "found_date": dt.date(2024, 3, 15)},
             {"platform": "FORUM", "risk_type": "DRINKING_WATER", "village_code": OTHER_VILLAGE, "person_key": None}]),
        Case("education", "student-roll", "povwatch.events.StudentRoll", "person", [
            ["学生姓名", "学生身份证号码", "性别", "学校名称", "学段", "年级", "在校状态", "状态日期"],
            ["张小红", GIRL, "女", "博乐市第三中学", "初中", "七年级", "辍学", "2024-03-01"],
            ["李小军", BOY, "男", "博州中职", "中职", "二年级", "在读", "2024-03-01"],
            ["李小军", BOY, "女", "博州中职", "中职", "二年级", "在读", "2024-03-01"],
        ], 2, 1, {4: ["sex: 性别 does not match the sex encoded in the ID number"]},
            [person_key(GIRL), person_key(BOY)],
            [{"sex": "F", "stage": "JUNIOR", "status": "DROPPED_OUT", "status_date": dt.date(2024, 3, 1)},
             {"sex": "M", "stage": "VOCATIONAL", "status": "ENROLLED"}]),
        Case("education", "student-aid", "povwatch.events.StudentAid", "person", [
            ["学生姓名", "学生身份证号码", "资助项目", "资助金额", "发放日期"],
            ["张小红", GIRL, "寄宿生生活补助", "625", "2024-04-10"],
            ["李小军", BOY, "雨露计划", "-1500", "2024-04-10"],
        ], 1, 1, {3: ["amount: negative amount"]},
            [person_key(GIRL)], [{"programme": "BOARDING_ALLOWANCE", "amount": Decimal("625.00")}]),
        Case("public-security", "identity-check", "povwatch.events.IdentityCheck", "person", [
            ["姓名", "身份证号码", "性别", "文化程度", "与户主关系", "家庭详细住址", "比对日期"],
            ["王建国", MAN, "男", "小学", "户主", "达勒特村3组12号", "2024-05-20"],
            ["马桂英", WOMAN, "女", "初中", "儿媳", "达勒特村3组12号", "2024-05-20"],
        ], 1, 1, {3: ["relation: unknown value '儿媳' (expected one of 户主 / 配偶 / 子 / 女 / 父亲 / 母亲 / 孙子 / "
                      "孙女 / 其他)"]},
            [person_key(MAN)], [{"sex": "M", "education_level": "PRIMARY", "relation": "HEAD",
                                 "address": "达勒特村3组12号"}]),
        Case("public-security", "traffic-accident", "povwatch.events.TrafficAccident", "person", [
            ["姓名", "身份证号码", "事故日期", "伤亡情况", "事故地点", "责任认定"],
            ["赵老汉", OLD, "2024-02-14", "死亡", "赵老汉骑车途经G30", "次要"],
            ["王建国", MAN, "2024-02-30", "重伤", "", "主要"],
        ], 1, 1, {3: ["accident_date: not a real date: 2024-02-30"]},
            [person_key(OLD)], [{"casualty": "DEATH", "liability": "MINOR", "location": "<name-redacted>骑车途经G30"}]),
        Case("civil-affairs", "assistance", "povwatch.events.SocialAssistance", "person", [
            ["姓名", "身份证号码", "救助类型", "变动类型", "金额（元）", "开始日期", "结束日期"],
            ["马桂英", WOMAN, "低保", "纳入", "520", "2024-01-01", ""],
            ["赵老汉", OLD, "特困供养", "退出", "0", "2024-01-01", "2023-12-31"],
        ], 1, 1, {3: ["end_date: 结束日期 before 开始日期"]},
            [person_key(WOMAN)], [{"assistance_type": "MINIMUM_LIVING_GUARANTEE", "change_type": "ENROLLED",
                                   "amount": Decimal("520.00"), "end_date": None}]),
        Case("hrss", "employment", "povwatch.events.Employment", "person", [
            ["县市", "乡镇", "村", "姓名", "身份证号码", "转移渠道", "转移就业方式", "务工开始日期", "上月务工薪酬(元)",
             "工作单位", "务工结束日期", "养老保险"],
            ["博乐市", "小营盘镇", "达勒特村", "王建国", MAN, "有组织转移", "区外", "2024-03-01", "4,800", "某纺织厂",
             "2024-06-15", "已参保"],
            ["博乐市", "小营盘镇", "达勒特村", "马桂英", WOMAN, "自主转移", "县内", "2024-03-01", "1800", "某餐馆",
             "2024-02-01", "未参保"],
        ], 1, 1, {3: ["end_date: 务工结束日期 before 务工开始日期"]},
            [person_key(MAN)], [{"transfer_channel": "ORGANISED", "employment_scope": "OUTSIDE_REGION",
                                 "last_month_wage": Decimal("4800.00"), "end_date": dt.date(2024, 6, 15),
                                 "pension_insurance": "INSURED"}]),
        Case("housing", "house-safety", "povwatch.events.HouseSafety", "household", [
            ["户主姓名", "户主身份证号码", "行政区划代码", "事由", "鉴定等级", "损毁程度", "日期"],
            ["王建国", MAN, VILLAGE, "自然灾害", "D", "倒塌", "2024-06-22"],
            ["马桂英", "", VILLAGE, "鉴定", "C", "一般损坏", "2024-06-22"],
        ], 1, 1, {3: ["head_id_number: missing 户主身份证号码"]},
            [person_key(MAN)], [{"cause": "NATURAL_DISASTER", "safety_grade": "D", "damage": "COLLAPSED",
                                 "village_code": VILLAGE}]),
        Case("natural-resources", "commercial-housing", "povwatch.events.CommercialHousing", "person", [
            ["姓名", "身份证号码", "房屋类型", "建筑面积（平方米）", "登记日期", "房屋坐落"],
            ["马桂英", WOMAN, "商品住房", "96.5", "2024-04-18", "博乐市青得里大街88号"],
            ["王建国", MAN, "商品住房", "0", "2024-04-18", "博乐市青得里大街88号"],
        ], 1, 1, {3: ["floor_area: 建筑面积 must be more than 0 square metres"]},
            [person_key(WOMAN)], [{"property_type": "NEW_HOUSING", "floor_area": Decimal("96.50")}]),
        Case("water", "drinking-water", "povwatch.events.DrinkingWater", "village", [
            ["行政区划代码", "户主身份证号码", "问题指标", "发现日期", "问题描述", "解决日期"],
            [VILLAGE, "", "水质、水量", "2024-05-06", "夏季停水", ""],
            [VILLAGE, MAN, "供水保证率", "2024-05-06", "入户管网老化", "2024-06-01"],
            [VILLAGE, "", "水压", "2024-05-06", "x", ""],
        ], 2, 1, {4: ["indicators: unknown value '水压' (expected one of 水量 / 水质 / 用水方便程度 / 供水保证率)"]},
            [VILLAGE, person_key(MAN)],
            [{"indicators": ["QUANTITY", "QUALITY"], "person_key": None, "resolved_date": None},
             {"indicators": ["SUPPLY_RATE"], "person_key": person_key(MAN), "resolved_date": dt.date(2024, 6, 1)}]),
        Case("agriculture", "farm-disaster", "povwatch.events.FarmDisaster", "village", [
            ["行政区划代码", "户主身份证号码", "灾害类型", "受灾作物或畜种", "受灾面积(亩)", "绝收面积(亩)",
             "死亡牲畜(头只)", "直接经济损失", "灾害日期"],
            [VILLAGE, "", "冰雹", "棉花", "1200.5", "300", "0", "860000", "2024-06-20"],
            [VILLAGE, WOMAN, "冰雹", "小麦", "10", "12", "0", "5000", "2024-06-20"],
        ], 1, 1, {3: ["lost_area: 绝收面积 larger than 受灾面积"]},
            [VILLAGE], [{"disaster_type": "HAIL", "affected_area": Decimal("1200.50"), "lost_area": Decimal("300.00"),
                         "person_key": None}]),
        Case("agriculture", "collective-income", "povwatch.events.CollectiveIncome", "village", [
            ["行政区划代码", "年度", "经营收入", "可分配收益", "分配人数", "上年可分配收益"],
            [OTHER_VILLAGE, "2023", "1,260,000", "386500.5", "1240", "352000"],
            [VILLAGE, "1999", "1", "1", "1", "1"],
            [VILLAGE, str(THIS_YEAR), "2", "2", "2", "2"],
            [VILLAGE, str(THIS_YEAR + 1), "3", "3", "3", "3"],
        ], 2, 2, {3: [f"year: year 1999 outside 2000-{THIS_YEAR}"],
                  5: [f"year: year {THIS_YEAR + 1} outside 2000-{THIS_YEAR}"]},
            [OTHER_VILLAGE, VILLAGE],
            # dated by its 年度: 1 January of that year (the feed contract gives no day)
            [{"year": 2023, "distributable_income": Decimal("386500.50"), "beneficiaries": 1240,
              "person_key": None, "occurred_at": dt.date(2023, 1, 1)},
             {"year": THIS_YEAR, "beneficiaries": 2, "occurred_at": dt.date(THIS_YEAR, 1, 1)}]),
    ]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"povwatch {' '.join(args)} failed ({done.returncode}): {done.stderr}"
    return done


@dataclass
class World:
    run: str
    cases: list[Case]
    files: dict[str, str]  # feed -> file name (the events' and dead letters' origin)
    records: list[Record]


@pytest.fixture(scope="module")
def world(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    run = uuid.uuid4().hex[:8]
    env = {"POVWATCH_BOOTSTRAP": broker, "POVWATCH_PSEUDONYM_KEY": KEY}
    _cli(env, "topics", "ensure")
    folder = tmp_path_factory.mktemp("feeds-a")
    all_cases = cases(run)
    files = {}
    for number, case in enumerate(all_cases):
        name = f"{case.feed}-{run}.csv"
        # some files as Excel on a Chinese Windows machine writes them
        write_csv(folder / name, case.rows, encoding="gbk" if number % 3 == 0 else "utf-8")
        files[case.feed] = name
        out = _cli(env, "connector", "run", case.department, case.feed, str(folder / name), "--json")
        case.summary = json.loads(out.stdout)
    topics = sorted({f"events.{c.department}.{c.feed}" for c in all_cases} | {f"dlq.{c.department}" for c in all_cases})

    async def read() -> list[Record]:
        return [rec async for rec in read_topic(broker, topics, idle_timeout=3)]

    yield World(run, all_cases, files, asyncio.run(read()))


def _ours(world: World, case: Case, topic: str) -> list[tuple[Record, dict[str, Any]]]:
    """The messages of this run's file for `case` on `topic` (other tests share the broker), in row order."""
    out = []
    for rec in world.records:
        if rec.topic != topic:
            continue
        _, record = decode(rec.value)
        if record["source"]["origin"] == world.files[case.feed]:
            out.append((rec, record))
    return sorted(out, key=lambda pair: pair[1]["source"]["row"])


def test_counts_add_up(world: World) -> None:
    assert {c.department for c in world.cases} == {"cac", "education", "public-security", "civil-affairs", "hrss",
                                                   "housing", "natural-resources", "water", "agriculture"}
    for case in world.cases:
        s = case.summary
        assert (s["read"], s["published"], s["rejected"], s["duplicates"]) == (
            len(case.rows) - 1, case.published, case.rejected, 0), case.feed
        assert s["read"] == s["published"] + s["rejected"]
        assert {r["row"]: r["reasons"] for r in s["rejects"]} == case.reasons, case.feed
        events = _ours(world, case, f"events.{case.department}.{case.feed}")
        letters = _ours(world, case, f"dlq.{case.department}")
        assert (len(events), len(letters)) == (case.published, case.rejected), case.feed
        assert len(events) + len(letters) == s["read"]


def test_events_decode_with_the_avsc_files_and_carry_the_values(world: World) -> None:
    for case in world.cases:
        events = _ours(world, case, f"events.{case.department}.{case.feed}")
        assert [(rec.key or b"").decode() for rec, _ in events] == case.keys, case.feed
        for (rec, event), want in zip(events, case.values, strict=True):
            name, _ = decode(rec.value)
            assert name == case.schema
            assert {k: event[k] for k in want} == want, case.feed
            assert len(event["event_id"]) == 32
            assert event["source"]["department"] == case.department and event["source"]["feed"] == case.feed
            assert isinstance(event["occurred_at"], dt.date)
            if case.link != "village":
                assert event["person_key"] == (rec.key or b"").decode()
            else:  # a village-level event: keyed by the person when named, else by the village
                assert (rec.key or b"").decode() == (event["person_key"] or event["village_code"])


def test_dead_letters_carry_row_and_reasons_with_names_and_ids_redacted(world: World) -> None:
    for case in world.cases:
        letters = _ours(world, case, f"dlq.{case.department}")
        for rec, letter in letters:
            name, _ = decode(rec.value)
            assert name == "povwatch.DeadLetter"
            row = letter["source"]["row"]
            assert letter["reasons"] == case.reasons[row], case.feed
            assert rec.key == f"{world.files[case.feed]}:{row}".encode()
            sensitive = [k for k in letter["fields"] if k.endswith("id_number") or k.endswith("name")]
            for key in sensitive:
                assert letter["fields"][key] in ("", "<redacted id>", "<redacted name>"), (case.feed, key)


def test_no_name_or_id_number_of_the_input_on_any_topic(world: World) -> None:
    needles = set()
    for id18 in [*IDS, *(bad_check(i) for i in IDS)]:
        needles |= {id18.encode(), id18.lower().encode(), id18[:17].encode()}
    for name in NAMES:
        needles |= {name.encode("utf-8"), name.encode("gb18030")}
    needles |= {b"13800138000"}
    scanned = 0
    for rec in world.records:
        blob = (rec.key or b"") + rec.value
        for needle in needles:
            assert needle not in blob, f"{rec.topic}[{rec.partition}]@{rec.offset} carries input data"
        scanned += 1
    assert scanned >= sum(len(c.rows) - 1 for c in world.cases)
