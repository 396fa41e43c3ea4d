"""Feeds of health, medical-security insurance, pboc, disabled-federation, market-regulation, statistics and
farm-machinery: each feed's mapping from a real file (Chinese headers and their variants, a GBK file), every
cross-field check at its boundary and past it, and messy rows. No broker: the real framework, codec and files,
an in-memory publisher. Every run checks read = published + rejected + duplicates and that no name or ID number
of the file is in any message sent (events and dead letters)."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.catalog import get_feed
from connectors.fields import Year
from connectors.framework import EventHandler, FeedSpec, RawRow, Rejection, Summary, ValidRecord, run_file, validate
from connectors.pseudonym import Pseudonymiser
from schemas.codec import default_codec
from tests.unit.doubles import FIXED_NOW, TEST_KEY, MemoryPublisher, fixed_clock, make_id, write_csv

CODEC = default_codec()
TODAY = FIXED_NOW.date()  # 2024-07-01

CHRONIC = get_feed("health", "chronic-disease")
SERIOUS = get_feed("health", "serious-illness")
INSURANCE = get_feed("medical-security", "insurance")
DEPOSIT_LOAN = get_feed("pboc", "deposit-loan")
DISABILITY = get_feed("disabled-federation", "disability-certificate")
BUSINESS = get_feed("market-regulation", "business-registration")
INCOME = get_feed("statistics", "household-income")
MACHINERY = get_feed("farm-machinery", "machinery-purchase")
OURS = [CHRONIC, SERIOUS, INSURANCE, DEPOSIT_LOAN, DISABILITY, BUSINESS, INCOME, MACHINERY]

WANG_F = make_id("652701", "19650312", 2)  # a woman (even serial)
MA_M = make_id("652701", "19710823", 41)  # a man
LI_F = make_id("652701", "19880615", 52)
ZHANG_M = make_id("652722", "19750909", 31)
BAD_CHECK = MA_M[:17] + ("0" if MA_M[17] != "0" else "1")  # the same number with a wrong check character
COOP_CODE = "93652701MA78L1QH3X"  # a farmers' cooperative (93), check character computed by GB 32100


def person_key(id18: str) -> str:
    """Computed here independently of connectors.pseudonym: HMAC-SHA256(key, ID number), hex."""
    return hmac.new(TEST_KEY, id18.encode("ascii"), hashlib.sha256).hexdigest()


def run(spec: FeedSpec, path: Path, *, secrets: Iterable[str] = ()) -> tuple[Summary, MemoryPublisher]:
    publisher = MemoryPublisher()
    handler = EventHandler(spec, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC, clock=fixed_clock())
    summary = asyncio.run(run_file(spec, path, handler, publisher_factory=lambda: publisher, codec=CODEC,
                                   clock=fixed_clock()))
    assert summary.read == summary.published + summary.rejected + summary.duplicates
    assert len(publisher.on(spec.topic)) == summary.published
    assert len(publisher.on(spec.dlq)) == summary.rejected == len(summary.rejects)
    for message in publisher.sent:
        text = message.key.decode("utf-8", "ignore") + message.value.decode("utf-8", "ignore")
        for secret in secrets:
            assert secret not in text, f"{secret!r} travels on {message.topic}"
    return summary, publisher


def events(publisher: MemoryPublisher, spec: FeedSpec) -> list[dict[str, Any]]:
    return [CODEC.decode(m.value, expect=spec.schema).record for m in publisher.on(spec.topic)]


def letters(publisher: MemoryPublisher, spec: FeedSpec) -> list[dict[str, Any]]:
    return [CODEC.decode(m.value, expect="povwatch.DeadLetter").record for m in publisher.on(spec.dlq)]


def reasons_by_row(summary: Summary) -> dict[int, tuple[str, ...]]:
    return dict(summary.rejects)


def check(spec: FeedSpec, **changes: str) -> ValidRecord | Rejection:
    """The feed's example row with some cells changed, validated as of TODAY."""
    return validate(spec, RawRow(2, {**spec.example, **changes}), TODAY)


def accepted(spec: FeedSpec, **changes: str) -> dict[str, Any]:
    outcome = check(spec, **changes)
    assert isinstance(outcome, ValidRecord), outcome
    return outcome.values


def rejected(spec: FeedSpec, **changes: str) -> tuple[str, ...]:
    outcome = check(spec, **changes)
    assert isinstance(outcome, Rejection), outcome.values
    return outcome.reasons


def table(spec: FeedSpec, rows: Sequence[Mapping[str, str]], header: Sequence[str] | None = None) -> list[list[str]]:
    """A file's rows: the header (the Chinese labels unless given) and each row's cells in that order."""
    labels = list(header) if header is not None else [c.label for c in spec.columns]
    fields = [c.field for c in spec.columns]
    return [labels, *[[row.get(f, "") for f in fields] for row in rows]]


# --- health chronic-disease ----------------------------------------------------------------------------------


def test_chronic_disease_from_a_gbk_file_with_header_variants(tmp_path: Path) -> None:
    header = ["\u3000姓名 ", "id_number", "病种", " 确诊日期", "签约服务", "管理状态"]
    path = write_csv(tmp_path / "重点慢病.csv", table(CHRONIC, [
        {"name": "王秀英", "id_number": WANG_F, "disease": "糖尿病", "diagnosis_date": "2024年2月18日",
         "contract_service": "已签约", "management_status": "在管"},
        {"name": "马建国", "id_number": MA_M.lower(), "disease": "严重精神障碍", "diagnosis_date": "20231105",
         "contract_service": "未签约", "management_status": "失访"},
        {"name": "李桂兰", "id_number": LI_F, "disease": "结核病", "diagnosis_date": "2022/9/1",
         "contract_service": "SIGNED", "management_status": "治愈"},
    ], header), encoding="gbk")
    summary, publisher = run(CHRONIC, path, secrets=["王秀英", "马建国", "李桂兰", WANG_F, MA_M, LI_F])
    assert (summary.read, summary.published, summary.rejected, summary.encoding) == (3, 3, 0, "gb18030")
    first, second, third = events(publisher, CHRONIC)
    assert first["person_key"] == person_key(WANG_F)
    assert (first["disease"], first["diagnosis_date"], first["contract_service"], first["management_status"]) == (
        "DIABETES", dt.date(2024, 2, 18), "SIGNED", "MANAGED")
    assert first["occurred_at"] == dt.date(2024, 2, 18)
    assert second["person_key"] == person_key(MA_M)  # a lower-case x would be upper-cased; digits unchanged
    assert (second["disease"], second["management_status"]) == ("SEVERE_MENTAL_DISORDER", "LOST_TO_FOLLOW_UP")
    assert (third["disease"], third["contract_service"], third["management_status"]) == (
        "TUBERCULOSIS", "SIGNED", "CURED")
    assert {m.key for m in publisher.on(CHRONIC.topic)} == {person_key(i).encode() for i in (WANG_F, MA_M, LI_F)}
    assert "name" not in first and "id_number" not in first


# --- health serious-illness ----------------------------------------------------------------------------------


def test_serious_illness_mapping_and_free_text_disease(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "大病.csv", table(SERIOUS, [
        {**SERIOUS.example, "disease": "急性白血病", "treatment_status": "已救治"},
        {**SERIOUS.example, "id_number": LI_F, "name": "李桂兰", "disease": "先天性心脏病",
         "hospital": "新疆医科大学第一附属医院", "treatment_start_date": "2024-06-30", "treatment_status": "放弃救治"},
    ]))
    summary, publisher = run(SERIOUS, path, secrets=["马建国", "李桂兰", MA_M, LI_F])
    assert (summary.published, summary.rejected) == (2, 0)
    first, second = events(publisher, SERIOUS)
    assert (first["disease"], first["hospital"], first["treatment_status"]) == (
        "急性白血病", "博尔塔拉蒙古自治州人民医院", "TREATED")
    assert (second["disease"], second["treatment_start_date"], second["treatment_status"]) == (
        "先天性心脏病", dt.date(2024, 6, 30), "ABANDONED")
    assert second["occurred_at"] == dt.date(2024, 6, 30)
    assert rejected(SERIOUS, treatment_start_date="2024-07-02") == (
        "treatment_start_date: date in the future: 2024-07-02",)


# --- medical-security insurance --------------------------------------------------------------------------------


def test_insurance_mapping(tmp_path: Path) -> None:
    header = ["姓名", "身份证号码", "性别", "险种", "参保状态", "年度", "个人缴费（元）", "资助缴费(元)"]
    path = write_csv(tmp_path / "参保.csv", table(INSURANCE, [
        INSURANCE.example,
        {"name": "马建国", "id_number": MA_M, "sex": "1", "insurance_type": "医疗救助", "enrolment_status": "停保",
         "year": "2023年", "personal_contribution": "０", "subsidised_contribution": ""},
        {"name": "马建国", "id_number": MA_M, "sex": "男", "insurance_type": "大病保险", "enrolment_status": "未参保",
         "year": "2000", "personal_contribution": "1,234.5", "subsidised_contribution": "0"},
    ], header))
    summary, publisher = run(INSURANCE, path, secrets=["李桂兰", "马建国", LI_F, MA_M])
    assert (summary.published, summary.rejected) == (3, 0)
    first, second, third = events(publisher, INSURANCE)
    assert (first["sex"], first["insurance_type"], first["enrolment_status"], first["year"]) == (
        "F", "BASIC_MEDICAL", "ENROLLED", 2024)
    assert (first["personal_contribution"], first["subsidised_contribution"]) == (Decimal("380.00"), Decimal("200.00"))
    # dated by its 年度: 1 January of that year (the feed contract gives no day)
    assert first["occurred_at"] == dt.date(2024, 1, 1) and "report_date" not in first
    assert (second["sex"], second["insurance_type"], second["enrolment_status"], second["year"]) == (
        "M", "MEDICAL_AID", "SUSPENDED", 2023)
    assert (second["personal_contribution"], second["subsidised_contribution"]) == (Decimal("0.00"), None)
    assert second["occurred_at"] == dt.date(2023, 1, 1)
    assert (third["insurance_type"], third["enrolment_status"], third["year"]) == ("SERIOUS_ILLNESS", "NOT_ENROLLED",
                                                                                  2000)
    assert third["personal_contribution"] == Decimal("1234.50") and third["subsidised_contribution"] == Decimal(0)
    assert third["occurred_at"] == dt.date(2000, 1, 1)


def test_insurance_checks() -> None:
    # 年度 from 2000 to the current year (2024 on TODAY)
    assert accepted(INSURANCE, year="2000")["year"] == 2000
    assert accepted(INSURANCE, year="2024")["year"] == 2024
    assert rejected(INSURANCE, year="1999") == ("year: year 1999 outside 2000-2024",)
    assert rejected(INSURANCE, year="2025") == ("year: year 2025 outside 2000-2024",)
    assert rejected(INSURANCE, year="24") == ("year: not a year: '24'",)
    # money never negative, 资助缴费 included; zero is a contribution
    assert accepted(INSURANCE, subsidised_contribution="0.00")["subsidised_contribution"] == Decimal(0)
    assert rejected(INSURANCE, subsidised_contribution="-0.01") == ("subsidised_contribution: negative amount",)
    assert rejected(INSURANCE, personal_contribution="-380") == ("personal_contribution: negative amount",)
    # the sex written agrees with the sex inside the ID number
    assert rejected(INSURANCE, sex="男") == ("sex: does not match the sex encoded in the ID number",)
    assert accepted(INSURANCE, sex="F")["sex"] == "F"


# --- pboc deposit-loan ------------------------------------------------------------------------------------------


def test_deposit_loan_mapping_with_a_due_date_ahead(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "存贷款.csv", table(DEPOSIT_LOAN, [
        DEPOSIT_LOAN.example,
        {"name": "李桂兰", "id_number": LI_F, "deposit_balance": "３２００．５", "loan_balance": "0",
         "loan_type": "其他", "comparison_date": "2024/6/30"},
    ]))
    summary, publisher = run(DEPOSIT_LOAN, path, secrets=["马建国", "李桂兰", MA_M, LI_F])
    assert (summary.published, summary.rejected) == (2, 0)
    loan, saver = events(publisher, DEPOSIT_LOAN)
    assert (loan["deposit_balance"], loan["loan_balance"], loan["interest_subsidy"]) == (
        Decimal("12500.00"), Decimal("50000.00"), Decimal("1150.00"))
    assert (loan["loan_type"], loan["loan_issue_date"], loan["loan_due_date"]) == (
        "POVERTY_MICROCREDIT", dt.date(2023, 4, 10), dt.date(2026, 4, 9))  # due in the future: a term, not a fact
    assert loan["comparison_date"] == loan["occurred_at"] == dt.date(2024, 6, 30)
    assert (saver["deposit_balance"], saver["loan_balance"], saver["loan_type"]) == (
        Decimal("3200.50"), Decimal("0.00"), "OTHER")
    assert (saver["loan_issue_date"], saver["loan_due_date"], saver["interest_subsidy"]) == (None, None, None)
    assert saver["person_key"] == person_key(LI_F)


def test_deposit_loan_checks() -> None:
    # 贷款到期日期 not before 贷款发放日期: the same day is accepted, the day before is not
    assert accepted(DEPOSIT_LOAN, loan_due_date="2023-04-10")["loan_due_date"] == dt.date(2023, 4, 10)
    assert rejected(DEPOSIT_LOAN, loan_due_date="2023-04-09") == (
        "loan_due_date: 贷款到期日期 before 贷款发放日期",)
    # either date alone is not compared
    assert accepted(DEPOSIT_LOAN, loan_issue_date="", loan_due_date="2020-01-01")["loan_issue_date"] is None
    assert accepted(DEPOSIT_LOAN, loan_due_date="")["loan_due_date"] is None
    # a loan in the balance was issued by the 比对日期
    assert accepted(DEPOSIT_LOAN, loan_issue_date="2024-06-30")["loan_issue_date"] == dt.date(2024, 6, 30)
    assert rejected(DEPOSIT_LOAN, loan_issue_date="2024-07-01", loan_due_date="2027-07-01") == (
        "loan_issue_date: 贷款发放日期 after the 比对日期",)
    # money never negative, 贴息金额 included
    assert rejected(DEPOSIT_LOAN, interest_subsidy="-1") == ("interest_subsidy: negative amount",)
    assert rejected(DEPOSIT_LOAN, deposit_balance="-0.5", loan_balance="-2") == (
        "deposit_balance: negative amount", "loan_balance: negative amount")
    # the due date may be ahead, within 50 years; the issue and comparison dates may not
    assert rejected(DEPOSIT_LOAN, loan_due_date="2075-01-01") == (
        "loan_due_date: more than 50 years ahead: 2075-01-01",)
    assert rejected(DEPOSIT_LOAN, comparison_date="2024-07-02")[0].startswith("comparison_date: date in the future")


# --- disabled-federation disability-certificate ------------------------------------------------------------------


def test_disability_certificate_mapping_with_english_aliases(tmp_path: Path) -> None:
    header = ["name", "身份证号码", "disability_category", "残疾等级 ", "issue_date", "证件状态"]
    rows = [
        DISABILITY.example,
        {"name": "王秀英", "id_number": WANG_F, "disability_category": "多重", "disability_grade": "一级",
         "issue_date": "2010.05.20", "certificate_status": "过期"},
        {"name": "李桂兰", "id_number": LI_F, "disability_category": "mental", "disability_grade": "四级",
         "issue_date": "2019-01-02", "certificate_status": "注销"},
    ]
    path = write_csv(tmp_path / "残疾人证.csv", table(DISABILITY, rows, header), encoding="utf-8-sig")
    summary, publisher = run(DISABILITY, path, secrets=["张志强", "王秀英", "李桂兰", ZHANG_M, WANG_F, LI_F])
    assert (summary.published, summary.rejected, summary.encoding) == (3, 0, "utf-8-sig")
    got = [(e["disability_category"], e["disability_grade"], e["issue_date"], e["certificate_status"])
           for e in events(publisher, DISABILITY)]
    assert got == [("PHYSICAL", "GRADE_2", dt.date(2024, 5, 14), "VALID"),
                   ("MULTIPLE", "GRADE_1", dt.date(2010, 5, 20), "EXPIRED"),
                   ("MENTAL", "GRADE_4", dt.date(2019, 1, 2), "CANCELLED")]
    assert rejected(DISABILITY, disability_grade="五级") == (
        "disability_grade: unknown value '五级' (expected one of 一级 / 二级 / 三级 / 四级)",)


# --- market-regulation business-registration ---------------------------------------------------------------------


def test_business_registration_one_event_per_member(tmp_path: Path) -> None:
    shop_code = "92652701MA78L2B0XD"  # an individual business (92)
    path = write_csv(tmp_path / "市场主体.csv", table(BUSINESS, [
        BUSINESS.example,
        {**BUSINESS.example, "member_name": "马建国", "member_id_number": MA_M, "member_role": "成员",
         "capital_contribution": "20000", "credit_code": COOP_CODE.lower()},
        {"entity_name": "博乐市马建国农机修理部", "credit_code": shop_code, "entity_type": "个体工商户",
         "registration_date": "2021-08-03", "capital_contribution": "50,000.00", "member_name": "马建国",
         "member_id_number": MA_M, "member_role": "出资人"},
    ]))
    summary, publisher = run(BUSINESS, path, secrets=["张志强", "马建国", ZHANG_M, MA_M])
    assert (summary.published, summary.rejected) == (3, 0)
    head, member, shop = events(publisher, BUSINESS)
    assert (head["person_key"], head["member_role"], head["entity_type"]) == (
        person_key(ZHANG_M), "LEGAL_REPRESENTATIVE", "FARMERS_COOPERATIVE")
    assert (head["entity_name"], head["credit_code"], head["capital_contribution"]) == (
        "博乐市红星农机专业合作社", COOP_CODE, Decimal("100000.00"))
    assert head["registration_date"] == head["occurred_at"] == dt.date(2024, 3, 20)
    assert (member["person_key"], member["member_role"], member["credit_code"]) == (person_key(MA_M), "MEMBER",
                                                                                    COOP_CODE)
    # an individual business is often named after its owner: the member's name is masked in the entity name
    assert shop["entity_name"] == "博乐市<name-redacted>农机修理部"
    assert (shop["entity_type"], shop["member_role"], shop["credit_code"]) == ("INDIVIDUAL_BUSINESS", "INVESTOR",
                                                                               shop_code)
    assert [m.key for m in publisher.on(BUSINESS.topic)] == [person_key(i).encode() for i in (ZHANG_M, MA_M, MA_M)]
    assert not {"member_name", "member_id_number"} & set(head)


def test_business_registration_checks() -> None:
    assert rejected(BUSINESS, credit_code="93652701MA78L1QH3Y") == (
        "credit_code: invalid unified social credit code: check character is Y, expected X",)
    assert rejected(BUSINESS, credit_code="93652701MA78L1QH3") == (
        "credit_code: invalid unified social credit code: must be 18 characters, got 17",)
    assert rejected(BUSINESS, credit_code="93652701MA78L1OH3X") == (
        "credit_code: invalid unified social credit code: contains O (the letters I, O, Z, S and V are not used)",)
    # 主体类型 agrees with the entity type in a market-regulation code (9x); 其他 is not compared
    assert rejected(BUSINESS, entity_type="个体工商户") == (
        "entity_type: 主体类型 个体工商户 but the 统一社会信用代码 starts with 93 (expected 92)",)
    assert rejected(BUSINESS, entity_type="有限责任公司") == (
        "entity_type: 主体类型 有限责任公司 but the 统一社会信用代码 starts with 93 (expected 91)",)
    assert accepted(BUSINESS, entity_type="其他")["entity_type"] == "OTHER"
    assert accepted(BUSINESS, entity_type="有限责任公司", credit_code="91350100M000100Y43")["entity_type"] == (
        "LIMITED_COMPANY")
    assert rejected(BUSINESS, capital_contribution="-100") == ("capital_contribution: negative amount",)
    assert accepted(BUSINESS, capital_contribution="0")["capital_contribution"] == Decimal(0)
    assert rejected(BUSINESS, member_role="监事") == (
        "member_role: unknown value '监事' (expected one of 法定代表人 / 出资人 / 成员)",)


# --- statistics household-income ---------------------------------------------------------------------------------


def test_household_income_from_a_gb18030_file_keyed_by_the_head(tmp_path: Path) -> None:
    header = ["户主姓名", "户主身份证号码", "年度", "家庭人口数", "家庭纯收入（元）", "人均纯收入(元)", "工资性收入",
              "经营净收入", "转移净收入", "财产净收入"]
    path = write_csv(tmp_path / "住户收入.csv", table(INCOME, [
        {**INCOME.example, "head_name": "王建军"},
        {"head_name": "马建国", "head_id_number": MA_M, "year": "2024年度", "household_size": "3",
         "net_income": "10,000.00", "per_capita_net_income": "3333.33", "wage_income": "6000"},
    ], header), encoding="gb18030")
    head_id = INCOME.example["head_id_number"]
    summary, publisher = run(INCOME, path, secrets=["王建军", "马建国", head_id, MA_M])
    assert (summary.published, summary.rejected) == (2, 0)
    first, second = events(publisher, INCOME)
    assert first["person_key"] == person_key(head_id)
    assert (first["year"], first["household_size"], first["net_income"], first["per_capita_net_income"]) == (
        2023, 4, Decimal("46000.00"), Decimal("11500.00"))
    assert [first[f] for f in ("wage_income", "business_income", "transfer_income", "property_income")] == [
        Decimal("28000.00"), Decimal("12000.00"), Decimal("5200.00"), Decimal("800.00")]
    # dated by its 年度: 1 January of that year (the feed contract gives no day)
    assert first["occurred_at"] == dt.date(2023, 1, 1) and "report_date" not in first
    assert (second["year"], second["household_size"], second["per_capita_net_income"]) == (2024, 3,
                                                                                           Decimal("3333.33"))
    assert second["occurred_at"] == dt.date(2024, 1, 1)
    assert (second["wage_income"], second["business_income"], second["property_income"]) == (
        Decimal("6000.00"), None, None)
    assert [m.key for m in publisher.on(INCOME.topic)] == [person_key(head_id).encode(), person_key(MA_M).encode()]


def test_household_income_product_check_within_one_yuan() -> None:
    no_parts = {"wage_income": "", "business_income": "", "transfer_income": "", "property_income": ""}
    # 11500 x 4 = 46000: 家庭纯收入 may differ by 1.00, not by 1.01
    assert accepted(INCOME, **no_parts, net_income="46001.00")["net_income"] == Decimal("46001.00")
    assert accepted(INCOME, **no_parts, net_income="45999.00")["net_income"] == Decimal("45999.00")
    [reason] = rejected(INCOME, **no_parts, net_income="46001.01")
    assert reason == ("per_capita_net_income: 11500.00 x 4 persons = 46000.00, but net_income is 46001.01 "
                      "(must agree within 1 CNY)")
    [reason] = rejected(INCOME, **no_parts, per_capita_net_income="11000")
    assert reason.startswith("per_capita_net_income: 11000.00 x 4 persons = 44000.00")
    assert rejected(INCOME, household_size="0")[0] == "household_size: 家庭人口数 must be at least 1"
    assert rejected(INCOME, household_size="51") == ("household_size: larger than 50",)


def test_household_income_components() -> None:
    # all four given: they add up to 家庭纯收入 (46000) within 1 CNY
    assert accepted(INCOME, property_income="801")["property_income"] == Decimal("801.00")
    [reason] = rejected(INCOME, property_income="801.01")
    assert reason == ("net_income: 工资性收入 + 经营净收入 + 转移净收入 + 财产净收入 = 46001.01, but 家庭纯收入 is "
                      "46000.00 (must agree within 1 CNY)")
    assert rejected(INCOME, property_income="0")[0].startswith("net_income: 工资性收入 + 经营净收入")
    # some given: they never exceed it
    assert accepted(INCOME, property_income="", transfer_income="")["transfer_income"] is None
    assert accepted(INCOME, wage_income="46001", business_income="", transfer_income="", property_income="")
    assert rejected(INCOME, wage_income="46001.01", business_income="", transfer_income="", property_income="") == (
        "net_income: the income components given add up to 46001.01, more than 家庭纯收入 46000.00",)
    assert rejected(INCOME, business_income="-300") == ("business_income: negative amount",)


def test_household_income_year() -> None:
    assert accepted(INCOME, year="2000")["year"] == 2000
    assert rejected(INCOME, year="1999") == ("year: year 1999 outside 2000-2024",)
    assert accepted(INCOME, year="2024")["year"] == 2024
    assert rejected(INCOME, year="2025") == ("year: year 2025 outside 2000-2024",)
    assert rejected(INCOME, year="24") == ("year: not a year: '24'",)


# --- the year-only feeds (insurance, household-income): dated 1 January of their 年度 ----------------------------


@pytest.mark.parametrize("spec", [INSURANCE, INCOME], ids=lambda s: s.feed)
def test_a_year_only_feed_is_dated_1_january_of_its_year_and_next_year_is_refused(spec: FeedSpec,
                                                                                   tmp_path: Path) -> None:
    assert spec.occurred_at == "year" and not any(c.label == "填报日期" for c in spec.columns)
    # TODAY is 2024-07-01: 年度 2024 (dated 2024-01-01) is the last one accepted, 2025 is in the future
    path = write_csv(tmp_path / "f.csv", table(spec, [{**spec.example, "year": "2024"},
                                                      {**spec.example, "year": "2025"},
                                                      {**spec.example, "year": "2000"}]))
    name_field = next(c.field for c in spec.columns if c.sensitive == "name")
    id_field = next(c.field for c in spec.columns if c.sensitive == "id")
    summary, publisher = run(spec, path, secrets=[spec.example[name_field], spec.example[id_field]])
    assert (summary.published, summary.rejected) == (2, 1)
    assert reasons_by_row(summary) == {3: ("year: year 2025 outside 2000-2024",)}
    assert [(e["year"], e["occurred_at"]) for e in events(publisher, spec)] == [
        (2024, dt.date(2024, 1, 1)), (2000, dt.date(2000, 1, 1))]
    [letter] = letters(publisher, spec)
    assert letter["reasons"] == ["year: year 2025 outside 2000-2024"] and letter["source"]["row"] == 3


# --- farm-machinery machinery-purchase --------------------------------------------------------------------------


def test_machinery_purchase_mapping(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "农机购置.csv", table(MACHINERY, [
        MACHINERY.example,
        {"name": "张志强", "id_number": ZHANG_M, "machine_type": "植保机械", "model": "大疆T40",
         "purchase_date": "20240512", "purchase_price": "59000", "subsidy": "0"},
    ]))
    summary, publisher = run(MACHINERY, path, secrets=["马建国", "张志强", MA_M, ZHANG_M])
    assert (summary.published, summary.rejected) == (2, 0)
    tractor, drone = events(publisher, MACHINERY)
    assert (tractor["machine_type"], tractor["model"], tractor["purchase_price"], tractor["subsidy"]) == (
        "TRACTOR", "东方红LX904", Decimal("168000.00"), Decimal("32400.00"))
    assert tractor["purchase_date"] == tractor["occurred_at"] == dt.date(2024, 3, 28)
    assert (drone["machine_type"], drone["subsidy"], drone["person_key"]) == ("PLANT_PROTECTION", Decimal(0),
                                                                             person_key(ZHANG_M))


def test_machinery_purchase_subsidy_within_price() -> None:
    assert accepted(MACHINERY, subsidy="168000")["subsidy"] == Decimal("168000.00")
    assert rejected(MACHINERY, subsidy="168000.01") == ("subsidy: 补贴金额 larger than 购买金额",)
    assert rejected(MACHINERY, purchase_price="-1") == ("purchase_price: negative amount",)
    assert rejected(MACHINERY, machine_type="无人机") == (
        "machine_type: unknown value '无人机' (expected one of 拖拉机 / 收获机 / 播种机 / 植保机械 / 其他)",)


# --- messy rows, every feed -------------------------------------------------------------------------------------

# per feed: (an enumeration, the column the event is dated by (a date, or 年度), a money column or "", its ID column)
MESSY = {
    CHRONIC.feed: ("disease", "diagnosis_date", "", "id_number"),
    SERIOUS.feed: ("treatment_status", "treatment_start_date", "", "id_number"),
    INSURANCE.feed: ("insurance_type", "year", "personal_contribution", "id_number"),
    DEPOSIT_LOAN.feed: ("loan_type", "comparison_date", "loan_balance", "id_number"),
    DISABILITY.feed: ("disability_category", "issue_date", "", "id_number"),
    BUSINESS.feed: ("member_role", "registration_date", "capital_contribution", "member_id_number"),
    INCOME.feed: ("", "year", "net_income", "head_id_number"),
    MACHINERY.feed: ("machine_type", "purchase_date", "subsidy", "id_number"),
}
IDS = [f"{s.department}/{s.feed}" for s in OURS]


def test_every_feed_of_the_group_is_in_the_messy_table() -> None:
    assert sorted(MESSY) == sorted(s.feed for s in OURS) and len(OURS) == 8


@pytest.mark.parametrize("spec", OURS, ids=IDS)
def test_messy_rows_are_rejected_with_reasons_and_never_leak(spec: FeedSpec, tmp_path: Path) -> None:
    enum, date, money, id_field = MESSY[spec.feed]
    required = next(c for c in spec.columns if c.required and c.sensitive is None and c.field != date)
    name_field = next(c.field for c in spec.columns if c.sensitive == "name")
    good = dict(spec.example)
    [dated_by] = [c for c in spec.columns if c.field == date]
    if isinstance(dated_by.parser, Year):  # a year-only feed, dated 1 January of its 年度 (TODAY is 2024-07-01)
        dated_mess = [
            ({**good, date: "2024-01-20"}, f"{date}: not a year: '2024-01-20'"),  # a date in the 年度 column
            ({**good, date: "上年"}, f"{date}: not a year: '上'"),
            ({**good, date: "1999"}, f"{date}: year 1999 outside 2000-2024"),
            ({**good, date: "2025"}, f"{date}: year 2025 outside 2000-2024"),
        ]
    else:
        dated_mess = [
            ({**good, date: "2024-02-30"}, f"{date}: not a real date: 2024-02-30"),
            ({**good, date: "上个月"}, f"{date}: not a date: '上个月'"),
            ({**good, date: "1899-12-31"}, f"{date}: date before 1900: 1899-12-31"),
        ]
    rows: list[tuple[dict[str, str], str | None]] = [
        (good, None),
        *dated_mess,
        ({**good, required.field: "  "}, f"{required.field}: missing {required.label}"),
        ({**good, id_field: BAD_CHECK}, f"{id_field}: invalid ID number: check character is {BAD_CHECK[17]}, "
                                        f"expected {MA_M[17]}"),
        ({**good, id_field: "65270119710823"}, f"{id_field}: invalid ID number"),
    ]
    if enum:
        rows.append(({**good, enum: "不知道"}, f"{enum}: unknown value '不知道' (expected one of "))
    if money:
        rows.append(({**good, money: "-12.50"}, f"{money}: negative amount"))
        rows.append(({**good, money: "1.2E+05"}, f"{money}: not an amount: '1.2E+05' (scientific notation"))
    path = write_csv(tmp_path / "messy.csv", table(spec, [cells for cells, _ in rows]))
    secrets = [spec.example[name_field], spec.example[id_field], BAD_CHECK, BAD_CHECK[:17]]
    summary, publisher = run(spec, path, secrets=secrets)
    assert (summary.read, summary.published, summary.rejected) == (len(rows), 1, len(rows) - 1)
    got = reasons_by_row(summary)
    for row, (_, expected) in enumerate(rows, start=2):
        if expected is None:
            assert row not in got
        else:
            assert len(got[row]) == 1 and got[row][0].startswith(expected), (row, got[row])
    for letter in letters(publisher, spec):  # dead letters carry the row, redacted, and the reasons
        assert letter["fields"][name_field] == "<redacted name>"
        assert letter["fields"][id_field] in ("<redacted id>", "")
        assert list(letter["reasons"]) == list(got[letter["source"]["row"]])
        assert letter["source"]["feed"] == spec.feed and letter["source"]["origin"] == "messy.csv"


@pytest.mark.parametrize("spec", OURS, ids=IDS)
def test_a_row_with_several_problems_lists_every_reason(spec: FeedSpec) -> None:
    enum, date, money, id_field = MESSY[spec.feed]
    changes = {date: "2024-13-01", id_field: BAD_CHECK}
    if money:
        changes[money] = "-1"
    if enum:
        changes[enum] = "?"
    reasons = rejected(spec, **changes)
    assert sorted(r.split(":")[0] for r in reasons) == sorted(changes)
    assert not any(MA_M[:17] in r for r in reasons)  # a reason never repeats the ID number
