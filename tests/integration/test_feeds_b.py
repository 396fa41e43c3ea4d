"""Group b's feeds through the real broker: health (both feeds), medical-security insurance, pboc deposit-loan,
disabled-federation disability-certificate, market-regulation business-registration, statistics household-income
and farm-machinery machinery-purchase — every department of the group, every feed.

Each file of good and bad rows is published by the connector's composition root (`services.ingest.run_connector`,
what `povwatch connector run` calls). The event and dead-letter topics are read back and decoded with nothing but
the `.avsc` files and fastavro: the single-object header (C3 01, then the CRC-64-AVRO fingerprint of the writer
schema's Parsing Canonical Form, 8 bytes little-endian) is taken apart here and the fingerprint computed here.
Other modules of the session may publish to the same topics, so this module counts only the messages whose
source names its own files (unique per run); the privacy scan reads every message on the topics.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import io
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
from pydantic import SecretStr

from plumbing.kafka_io import Record, ensure_topics, read_topic
from plumbing.settings import Settings
from schemas.topics import TopicSpec
from services.ingest import run_connector
from tests.unit.doubles import make_id, write_csv

pytestmark = pytest.mark.integration

AVRO_DIR = Path(__file__).resolve().parents[2] / "schemas" / "avro"
KEY = "integration-test-pseudonym-key-group-b"

WANG = make_id("652701", "19650312", 2)  # women have an even serial
MA = make_id("652701", "19710823", 41)
LI = make_id("652701", "19880615", 52)
ZHANG = make_id("652722", "19750909", 31)
HAN = make_id("652701", "19580311", 21)
COOP, COOP_CODE = "博乐市红星农机专业合作社", "93652701MA78L1QH3X"  # a farmers' cooperative (93)
THIS_YEAR = dt.datetime.now(ZoneInfo("Asia/Shanghai")).year  # 年度 may go up to the prefecture's current year
NAMES = ["王秀英", "马建国", "李桂兰", "张志强", "韩保国"]
IDS = [WANG, MA, LI, ZHANG, HAN]


def bad_check(id18: str) -> str:
    return id18[:17] + ("1" if id18[17] != "1" else "2")


def person_key(id18: str) -> str:
    return hmac.new(KEY.encode(), id18.encode("ascii"), hashlib.sha256).hexdigest()


# --- decoding with the .avsc files and fastavro alone ---------------------------------------------------------


def _crc64_table() -> list[int]:
    """CRC-64-AVRO (Avro specification, "Schema Fingerprints"): the reflected polynomial's byte table."""
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (0xC15D213AA4D7A795 if fp & 1 else 0)
        table.append(fp)
    return table


_CRC_TABLE = _crc64_table()


def crc64_avro(data: bytes) -> int:
    fp = 0xC15D213AA4D7A795
    for byte in data:
        fp = (fp >> 8) ^ _CRC_TABLE[(fp ^ byte) & 0xFF]
    return fp


def _writer_schemas() -> dict[bytes, tuple[str, Any]]:
    """Every current .avsc, by its fingerprint as it appears on the wire."""
    found = {}
    for path in sorted(AVRO_DIR.glob("*.avsc")):
        parsed = load_schema(str(path))
        canonical = to_parsing_canonical_form(parsed).encode("utf-8")
        found[crc64_avro(canonical).to_bytes(8, "little")] = (path.name[: -len(".avsc")], parsed)
    return found


WRITERS = _writer_schemas()


def decode(value: bytes) -> tuple[str, dict[str, Any]]:
    assert value[:2] == b"\xc3\x01", "not the Avro single-object encoding"
    assert value[2:10] in WRITERS, f"unknown writer fingerprint {value[2:10].hex()}"
    name, schema = WRITERS[value[2:10]]
    record = fastavro.schemaless_reader(io.BytesIO(value[10:]), schema, None)
    assert isinstance(record, dict)
    return name, record


# --- the files --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    department: str
    feed: str
    schema: str
    rows: list[list[str]]  # header first
    good: dict[int, tuple[str, dict[str, Any]]]  # row -> (ID number of the key, expected fields of its event)
    bad: dict[int, list[str]]  # row -> reasons
    encoding: str = "utf-8"
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def topic(self) -> str:
        return f"events.{self.department}.{self.feed}"

    @property
    def dlq(self) -> str:
        return f"dlq.{self.department}"


def cases() -> list[Case]:
    d = dt.date
    return [
        Case("health", "chronic-disease", "povwatch.events.ChronicDisease", [
            ["姓名", "身份证号码", "病种", "确诊日期", "签约服务", "管理状态"],
            ["王秀英", WANG, "高血压", "2024/2/18", "已签约", "在管"],
            ["马建国", MA, "严重精神障碍", "2023年11月5日", "未签约", "失访"],
            ["李桂兰", LI, "肺癌", "2024-01-09", "已签约", "在管"],
            ["张志强", bad_check(ZHANG), "糖尿病", "2024-01-09", "已签约", "死亡"],
        ], good={
            2: (WANG, {"disease": "HYPERTENSION", "diagnosis_date": d(2024, 2, 18), "contract_service": "SIGNED",
                       "management_status": "MANAGED", "occurred_at": d(2024, 2, 18)}),
            3: (MA, {"disease": "SEVERE_MENTAL_DISORDER", "contract_service": "NOT_SIGNED",
                     "management_status": "LOST_TO_FOLLOW_UP", "diagnosis_date": d(2023, 11, 5)}),
        }, bad={
            4: ["disease: unknown value '肺癌' (expected one of 高血压 / 糖尿病 / 结核病 / 严重精神障碍)"],
            5: [f"id_number: invalid ID number: check character is {bad_check(ZHANG)[17]}, expected {ZHANG[17]}"],
        }),
        Case("health", "serious-illness", "povwatch.events.SeriousIllness", [
            ["姓名", "身份证号码", "病种", "救治医院", "救治开始日期", "救治状态"],
            ["韩保国", HAN, "食管癌", "博尔塔拉蒙古自治州人民医院", "2024-04-09", "救治中"],
            ["马建国", MA, "尿毒症", "博乐市人民医院", "2099-01-01", "已救治"],
        ], good={
            2: (HAN, {"disease": "食管癌", "hospital": "博尔塔拉蒙古自治州人民医院",
                      "treatment_start_date": d(2024, 4, 9), "treatment_status": "IN_TREATMENT"}),
        }, bad={3: ["treatment_start_date: date in the future: 2099-01-01"]}),
        Case("medical-security", "insurance", "povwatch.events.Insurance", [
            ["姓名", "身份证号码", "性别", "险种", "参保状态", "年度", "个人缴费(元)", "资助缴费（元）"],
            ["李桂兰", LI, "女", "基本医疗保险", "参保", "2024", "380", "200"],
            ["韩保国", HAN, "男", "医疗救助", "停保", "2023", "0", ""],
            ["王秀英", WANG, "男", "大病保险", "参保", "2024", "380", ""],
            ["马建国", MA, "男", "大病保险", "参保", "1999", "380", "-20"],
            ["张志强", ZHANG, "男", "基本医疗保险", "参保", str(THIS_YEAR), "400", ""],
            ["韩保国", HAN, "男", "基本医疗保险", "参保", str(THIS_YEAR + 1), "400", ""],
        ], good={
            # dated by its 年度: 1 January of that year (the feed contract gives no day)
            2: (LI, {"sex": "F", "insurance_type": "BASIC_MEDICAL", "enrolment_status": "ENROLLED", "year": 2024,
                     "personal_contribution": Decimal("380.00"), "subsidised_contribution": Decimal("200.00"),
                     "occurred_at": d(2024, 1, 1)}),
            3: (HAN, {"sex": "M", "insurance_type": "MEDICAL_AID", "enrolment_status": "SUSPENDED", "year": 2023,
                      "personal_contribution": Decimal("0.00"), "subsidised_contribution": None,
                      "occurred_at": d(2023, 1, 1)}),
            6: (ZHANG, {"year": THIS_YEAR, "personal_contribution": Decimal("400.00"),
                        "occurred_at": d(THIS_YEAR, 1, 1)}),
        }, bad={
            4: ["sex: does not match the sex encoded in the ID number"],
            5: [f"year: year 1999 outside 2000-{THIS_YEAR}", "subsidised_contribution: negative amount"],
            7: [f"year: year {THIS_YEAR + 1} outside 2000-{THIS_YEAR}"],
        }),
        Case("pboc", "deposit-loan", "povwatch.events.DepositLoan", [
            ["姓名", "身份证号码", "存款余额", "贷款余额", "贷款类型", "贷款发放日期", "贷款到期日期", "贴息金额",
             "比对日期"],
            ["马建国", MA, "12,500.00", "50000", "脱贫人口小额信贷", "2023-04-10", "2026-04-09", "1150", "2024-06-30"],
            ["李桂兰", LI, "3200.5", "0", "其他", "", "", "", "2024-06-30"],
            ["张志强", ZHANG, "100", "8000", "消费贷款", "2024-03-01", "2024-02-28", "", "2024-06-30"],
            ["韩保国", HAN, "100", "8000", "创业担保贷款", "2024-03-01", "2025-03-01", "-5", "2024-06-30"],
        ], good={
            2: (MA, {"deposit_balance": Decimal("12500.00"), "loan_balance": Decimal("50000.00"),
                     "loan_type": "POVERTY_MICROCREDIT", "loan_issue_date": d(2023, 4, 10),
                     "loan_due_date": d(2026, 4, 9), "interest_subsidy": Decimal("1150.00"),
                     "comparison_date": d(2024, 6, 30), "occurred_at": d(2024, 6, 30)}),
            3: (LI, {"deposit_balance": Decimal("3200.50"), "loan_type": "OTHER", "loan_issue_date": None,
                     "loan_due_date": None, "interest_subsidy": None}),
        }, bad={
            4: ["loan_due_date: 贷款到期日期 before 贷款发放日期"],
            5: ["interest_subsidy: negative amount"],
        }),
        Case("disabled-federation", "disability-certificate", "povwatch.events.DisabilityCertificate", [
            ["姓名", "身份证号码", "残疾类别", "残疾等级", "发证日期", "证件状态"],
            ["张志强", ZHANG, "肢体", "二级", "2024-05-14", "有效"],
            ["王秀英", WANG, "视力", "五级", "2024-05-14", "有效"],
        ], good={
            2: (ZHANG, {"disability_category": "PHYSICAL", "disability_grade": "GRADE_2",
                        "issue_date": d(2024, 5, 14), "certificate_status": "VALID"}),
        }, bad={3: ["disability_grade: unknown value '五级' (expected one of 一级 / 二级 / 三级 / 四级)"]},
            encoding="gbk"),
        Case("market-regulation", "business-registration", "povwatch.events.BusinessRegistration", [
            ["主体名称", "统一社会信用代码", "主体类型", "注册日期", "出资额", "成员姓名", "成员身份证号码",
             "成员角色"],
            [COOP, COOP_CODE, "农民专业合作社", "2024-03-20", "100,000", "张志强", ZHANG, "法定代表人"],
            [COOP, COOP_CODE, "农民专业合作社", "2024-03-20", "20000", "马建国", MA, "成员"],
            # check character D (GB 32100), written E
            ["博乐市韩保国农机修理部", "92652701MA78L2B0XE", "个体工商户", "2021-08-03", "50000", "韩保国", HAN,
             "出资人"],
        ], good={
            2: (ZHANG, {"entity_name": COOP, "credit_code": COOP_CODE,
                        "entity_type": "FARMERS_COOPERATIVE", "registration_date": d(2024, 3, 20),
                        "capital_contribution": Decimal("100000.00"), "member_role": "LEGAL_REPRESENTATIVE"}),
            3: (MA, {"credit_code": COOP_CODE, "capital_contribution": Decimal("20000.00"),
                     "member_role": "MEMBER"}),
        }, bad={4: ["credit_code: invalid unified social credit code: check character is E, expected D"]}),
        Case("statistics", "household-income", "povwatch.events.HouseholdIncome", [
            ["户主姓名", "户主身份证号码", "年度", "家庭人口数", "家庭纯收入", "人均纯收入", "工资性收入", "经营净收入",
             "转移净收入", "财产净收入"],
            ["韩保国", HAN, "2023", "4", "46,000", "11500", "28000", "12000", "5200", "800"],
            ["马建国", MA, "2023", "3", "10000", "3000", "", "", "", ""],
            ["李桂兰", LI, str(THIS_YEAR), "2", "20000", "10000", "", "", "", ""],
            ["王秀英", WANG, str(THIS_YEAR + 1), "2", "20000", "10000", "", "", "", ""],
        ], good={
            # dated by its 年度: 1 January of that year (the feed contract gives no day)
            2: (HAN, {"year": 2023, "household_size": 4, "net_income": Decimal("46000.00"),
                      "per_capita_net_income": Decimal("11500.00"), "wage_income": Decimal("28000.00"),
                      "property_income": Decimal("800.00"), "occurred_at": d(2023, 1, 1)}),
            4: (LI, {"year": THIS_YEAR, "household_size": 2, "net_income": Decimal("20000.00"),
                     "wage_income": None, "occurred_at": d(THIS_YEAR, 1, 1)}),
        }, bad={3: ["per_capita_net_income: 3000.00 x 3 persons = 9000.00, but net_income is 10000.00 "
                    "(must agree within 1 CNY)"],
                5: [f"year: year {THIS_YEAR + 1} outside 2000-{THIS_YEAR}"]}),
        Case("farm-machinery", "machinery-purchase", "povwatch.events.MachineryPurchase", [
            ["姓名", "身份证号码", "机具类型", "机具型号", "购买日期", "购买金额", "补贴金额"],
            ["马建国", MA, "拖拉机", "东方红LX904", "2024-03-28", "168,000", "32,400"],
            ["张志强", ZHANG, "收获机", "约翰迪尔W80", "2024-05-02", "30000", "30000.01"],
            ["王秀英", WANG, "播种机", "", "2024-05-02", "3000", "600"],
        ], good={
            2: (MA, {"machine_type": "TRACTOR", "model": "东方红LX904", "purchase_date": d(2024, 3, 28),
                     "purchase_price": Decimal("168000.00"), "subsidy": Decimal("32400.00")}),
        }, bad={3: ["subsidy: 补贴金额 larger than 购买金额"], 4: ["model: missing 机具型号"]}),
    ]


SENSITIVE = {"name", "id_number", "member_name", "member_id_number", "head_name", "head_id_number"}
SECRETS = [*NAMES, *IDS, *(bad_check(i) for i in IDS), *(i[:17] for i in IDS)]


@dataclass
class Published:
    cases: list[Case]
    run: str
    records: list[Record]

    def origin(self, case: Case) -> str:
        return f"{case.feed}-{self.run}.csv"

    def ours(self, case: Case, topic: str) -> list[tuple[Record, dict[str, Any]]]:
        """The messages of `topic` that come from this module's file of `case`, decoded."""
        out = []
        for rec in self.records:
            if rec.topic != topic:
                continue
            _, record = decode(rec.value)
            if record["source"]["origin"] == self.origin(case):
                out.append((rec, record))
        return out


@pytest.fixture(scope="module")
def published(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    folder = tmp_path_factory.mktemp("feeds-b")
    run = uuid.uuid4().hex[:8]
    settings = Settings(bootstrap=broker, pseudonym_key=SecretStr(KEY))
    all_cases = cases()
    topics = sorted({c.topic for c in all_cases}) + sorted({c.dlq for c in all_cases})
    asyncio.run(ensure_topics(broker, settings.partitions, [TopicSpec(t) for t in topics]))
    for case in all_cases:
        path = write_csv(folder / f"{case.feed}-{run}.csv", case.rows, encoding=case.encoding)
        case.summary = asyncio.run(run_connector(settings, case.department, case.feed, path)).as_dict()

    async def collect() -> list[Record]:
        return [rec async for rec in read_topic(broker, topics, idle_timeout=3)]

    yield Published(all_cases, run, asyncio.run(collect()))


@pytest.mark.parametrize("index", range(len(cases())), ids=[f"{c.department}/{c.feed}" for c in cases()])
def test_counts_values_and_reasons(published: Published, index: int) -> None:
    case = published.cases[index]
    summary = case.summary
    data_rows = len(case.rows) - 1
    assert (summary["read"], summary["published"], summary["rejected"], summary["duplicates"]) == (
        data_rows, len(case.good), len(case.bad), 0)
    assert {r["row"]: r["reasons"] for r in summary["rejects"]} == case.bad
    if case.encoding == "gbk":
        assert summary["encoding"] == "gb18030"

    events = published.ours(case, case.topic)
    letters = published.ours(case, case.dlq)
    assert len(events) + len(letters) == summary["read"]  # read = published + rejected, on the broker
    assert len(events) == summary["published"] and len(letters) == summary["rejected"]

    by_row = {record["source"]["row"]: (rec, record) for rec, record in events}
    assert set(by_row) == set(case.good)
    for row, (id_number, expected) in case.good.items():
        rec, record = by_row[row]
        assert decode(rec.value)[0] == case.schema
        assert rec.key == person_key(id_number).encode("ascii") and record["person_key"] == person_key(id_number)
        assert {k: record[k] for k in expected} == expected, row
        assert record["source"]["department"] == case.department and record["source"]["feed"] == case.feed
        assert isinstance(record["occurred_at"], dt.date) and len(record["event_id"]) == 32
    for rec, letter in letters:
        assert decode(rec.value)[0] == "povwatch.DeadLetter"
        assert letter["stage"] == "connector"
        assert letter["reasons"] == case.bad[letter["source"]["row"]]
        for column, value in letter["fields"].items():
            if column in SENSITIVE:
                assert value in ("<redacted name>", "<redacted id>"), (column, value)


def test_no_name_or_id_number_on_any_topic(published: Published) -> None:
    assert len(published.records) >= sum(len(c.rows) - 1 for c in published.cases)
    for rec in published.records:  # every message on the topics, whoever sent it
        text = (rec.key or b"").decode("utf-8", "ignore") + rec.value.decode("utf-8", "ignore")
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} travels on {rec.topic}"


def test_the_members_name_is_masked_in_the_entity_name(published: Published) -> None:
    case = next(c for c in published.cases if c.feed == "business-registration")
    # 韩保国's business is named after him; his row was rejected (bad credit code), so it is on the dead letter
    [(_, letter)] = published.ours(case, case.dlq)
    assert letter["fields"]["entity_name"] == "博乐市<name-redacted>农机修理部"
    assert letter["fields"]["member_name"] == "<redacted name>"
