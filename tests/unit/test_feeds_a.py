"""The feeds of cac, education (student-roll, student-aid), public-security (identity-check, traffic-accident),
civil-affairs, hrss, housing, natural-resources, water and agriculture (the feed contract, "Every department's feeds"):
each feed's mapping from a real file (Chinese headers and their variants, GBK), its cross-field checks at and past
the boundary, and messy rows. What holds for every feed (example row, required columns, closed enumerations,
future dates, key by link, schema vs declaration) is tested in test_every_feed.py."""
from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.catalog import get_feed
from connectors.framework import EventHandler, FeedSpec, RawRow, Rejection, Summary, ValidRecord, run_file, validate
from connectors.pseudonym import Pseudonymiser
from schemas.codec import default_codec
from tests.unit.doubles import FIXED_NOW, TEST_KEY, MemoryPublisher, fixed_clock, make_id, write_csv

CODEC = default_codec()
TODAY = FIXED_NOW.date()

PUBLIC_OPINION = get_feed("cac", "public-opinion")
STUDENT_ROLL = get_feed("education", "student-roll")
STUDENT_AID = get_feed("education", "student-aid")
IDENTITY_CHECK = get_feed("public-security", "identity-check")
TRAFFIC_ACCIDENT = get_feed("public-security", "traffic-accident")
ASSISTANCE = get_feed("civil-affairs", "assistance")
EMPLOYMENT = get_feed("hrss", "employment")
HOUSE_SAFETY = get_feed("housing", "house-safety")
COMMERCIAL_HOUSING = get_feed("natural-resources", "commercial-housing")
DRINKING_WATER = get_feed("water", "drinking-water")
FARM_DISASTER = get_feed("agriculture", "farm-disaster")
COLLECTIVE_INCOME = get_feed("agriculture", "collective-income")
MINE = [PUBLIC_OPINION, STUDENT_ROLL, STUDENT_AID, IDENTITY_CHECK, TRAFFIC_ACCIDENT, ASSISTANCE, EMPLOYMENT,
        HOUSE_SAFETY, COMMERCIAL_HOUSING, DRINKING_WATER, FARM_DISASTER, COLLECTIVE_INCOME]

VILLAGE = "652701100201"
OTHER_VILLAGE = "652701100202"
MAN = make_id("652701", "19650910", 71)  # odd serial: a man
WOMAN = make_id("652701", "19781120", 22)  # even serial: a woman
GIRL = make_id("652701", "20120915", 42)
BOY = make_id("652701", "20100302", 17)  # ends in X
NAMES = ["王建国", "马桂英", "张小红", "李小军", "赵四"]


def person_key(id18: str) -> str:
    """Computed here independently of connectors.pseudonym: HMAC-SHA256(key, ID number), hex."""
    return hmac.new(TEST_KEY, id18.encode("ascii"), hashlib.sha256).hexdigest()


def wrong_check(id18: str) -> str:
    """The same number with another check character."""
    return id18[:17] + ("1" if id18[17] != "1" else "2")


def run(spec: FeedSpec, path: Path, *, secrets: Iterable[str] = ()) -> tuple[Summary, MemoryPublisher]:
    """One file through the real framework, codec and dead letters; checks the invariant and that no name or ID
    number of the file is in any message sent."""
    publisher = MemoryPublisher()
    handler = EventHandler(spec, pseudonymiser=Pseudonymiser(TEST_KEY), codec=CODEC, clock=fixed_clock())
    summary = asyncio.run(run_file(spec, path, handler, publisher_factory=lambda: publisher, codec=CODEC,
                                   clock=fixed_clock()))
    assert summary.balanced and summary.read == summary.published + summary.rejected + summary.duplicates
    assert len(publisher.on(spec.topic)) == summary.published
    assert len(publisher.on(spec.dlq)) == summary.rejected
    for message in publisher.sent:
        blob = message.key + message.value
        for secret in [*NAMES, *secrets]:
            assert secret.encode() not in blob, f"{secret!r} travels on {message.topic}"
    return summary, publisher


def events(spec: FeedSpec, publisher: MemoryPublisher) -> list[dict[str, Any]]:
    return [CODEC.decode(m.value, expect=spec.schema).record for m in publisher.on(spec.topic)]


def keys(spec: FeedSpec, publisher: MemoryPublisher) -> list[bytes]:
    return [m.key for m in publisher.on(spec.topic)]


def labels(spec: FeedSpec) -> list[str]:
    return [c.label for c in spec.columns]


def row_of(spec: FeedSpec, **cells: str) -> list[str]:
    """The example row with some cells changed, in declaration order."""
    values = {**spec.example, **cells}
    return [values.get(c.field, "") for c in spec.columns]


def reasons_of(spec: FeedSpec, **cells: str) -> tuple[str, ...]:
    """The reasons the example row with some cells changed is rejected for (empty: it is valid)."""
    outcome = validate(spec, RawRow(2, {**spec.example, **cells}), TODAY)
    return outcome.reasons if isinstance(outcome, Rejection) else ()


def valid(spec: FeedSpec, **cells: str) -> dict[str, Any]:
    outcome = validate(spec, RawRow(2, {**spec.example, **cells}), TODAY)
    assert isinstance(outcome, ValidRecord), outcome
    return outcome.values


def test_the_feeds_are_in_the_catalogue_in_feeds_md_order() -> None:
    assert [(s.department, s.feed, s.wire.link, s.wire.title) for s in MINE] == [
        ("cac", "public-opinion", "village", "网络舆情线索"),
        ("education", "student-roll", "person", "在校生信息"),
        ("education", "student-aid", "person", "学生资助"),
        ("public-security", "identity-check", "person", "户籍比对"),
        ("public-security", "traffic-accident", "person", "交通事故"),
        ("civil-affairs", "assistance", "person", "社会救助"),
        ("hrss", "employment", "person", "务工就业"),
        ("housing", "house-safety", "household", "住房安全"),
        ("natural-resources", "commercial-housing", "person", "商品住房"),
        ("water", "drinking-water", "village", "安全饮水"),
        ("agriculture", "farm-disaster", "village", "农业灾情"),
        ("agriculture", "collective-income", "village", "村集体可分配收益"),
    ]
    for spec in MINE:
        assert spec.topic == f"events.{spec.department}.{spec.feed}" and spec.dlq == f"dlq.{spec.department}"


# --- the columns, exactly as the feed contract gives them -----------------------------------------------------


@pytest.mark.parametrize("spec, columns", [
    (PUBLIC_OPINION, "线索编号 · 发现日期 · 来源平台 · 行政区划代码 · 涉及人员身份证号码 (opt) · 风险类型 · 线索摘要"),
    (STUDENT_ROLL, "学生姓名 · 学生身份证号码 · 性别 · 学校名称 · 学段 · 年级 · 在校状态 · 状态日期"),
    (STUDENT_AID, "学生姓名 · 学生身份证号码 · 资助项目 · 资助金额 · 发放日期"),
    (IDENTITY_CHECK, "姓名 · 身份证号码 · 性别 · 文化程度 · 与户主关系 · 家庭详细住址 · 比对日期"),
    (TRAFFIC_ACCIDENT, "姓名 · 身份证号码 · 事故日期 · 伤亡情况 · 事故地点 (opt) · 责任认定"),
    (ASSISTANCE, "姓名 · 身份证号码 · 救助类型 · 变动类型 · 金额 · 开始日期 · 结束日期 (opt)"),
    (EMPLOYMENT, "县市 · 乡镇 · 村 · 姓名 · 身份证号码 · 转移渠道 · 转移就业方式 · 务工开始日期 · 上月务工薪酬(元) · "
                 "工作单位 · 务工结束日期 (opt) · 养老保险"),
    (HOUSE_SAFETY, "户主姓名 · 户主身份证号码 · 行政区划代码 · 事由 · 鉴定等级 · 损毁程度 · 日期"),
    (COMMERCIAL_HOUSING, "姓名 · 身份证号码 · 房屋类型 · 建筑面积(平方米) · 登记日期 · 房屋坐落"),
    (DRINKING_WATER, "行政区划代码 · 户主身份证号码 (opt) · 问题指标 · 发现日期 · 问题描述 · 解决日期 (opt)"),
    (FARM_DISASTER, "行政区划代码 · 户主身份证号码 (opt) · 灾害类型 · 受灾作物或畜种 · 受灾面积(亩) · 绝收面积(亩) · "
                    "死亡牲畜(头只) · 直接经济损失 · 灾害日期"),
    # no date column: the event is dated by its 年度 (1 January)
    (COLLECTIVE_INCOME, "行政区划代码 · 年度 · 经营收入 · 可分配收益 · 分配人数 · 上年可分配收益"),
], ids=lambda v: v.feed if isinstance(v, FeedSpec) else "")
def test_columns_are_the_contract(spec: FeedSpec, columns: str) -> None:
    assert [f"{c.label}{'' if c.required else ' (opt)'}" for c in spec.columns] == columns.split(" · ")
    ids = [c for c in spec.columns if c.sensitive == "id"]
    assert len(ids) == (0 if spec is COLLECTIVE_INCOME else 1)
    assert all(c.label.endswith("身份证号码") for c in ids)
    assert {c.label for c in spec.columns if c.sensitive == "name"} <= {"姓名", "学生姓名", "户主姓名"}
    assert all(c.sensitive == "name" for c in spec.columns if c.label.endswith("姓名"))


@pytest.mark.parametrize("spec, field, allowed", [
    (PUBLIC_OPINION, "platform", {"微博": "WEIBO", "微信": "WECHAT", "抖音": "DOUYIN", "新闻网站": "NEWS_SITE",
                                  "论坛": "FORUM", "其他": "OTHER"}),
    (PUBLIC_OPINION, "risk_type", {"因病": "ILLNESS", "因灾": "DISASTER", "因学": "EDUCATION", "因残": "DISABILITY",
                                   "因意外": "ACCIDENT", "就业": "EMPLOYMENT", "住房": "HOUSING",
                                   "饮水": "DRINKING_WATER", "其他": "OTHER"}),
    (STUDENT_ROLL, "stage", {"学前": "PRESCHOOL", "小学": "PRIMARY", "初中": "JUNIOR", "高中": "SENIOR",
                             "中职": "VOCATIONAL", "高职": "HIGHER_VOCATIONAL", "本科": "UNDERGRADUATE"}),
    (STUDENT_ROLL, "status", {"在读": "ENROLLED", "休学": "SUSPENDED", "辍学": "DROPPED_OUT", "毕业": "GRADUATED",
                              "转出": "TRANSFERRED_OUT"}),
    (STUDENT_AID, "programme", {"营养改善计划": "NUTRITION_IMPROVEMENT", "寄宿生生活补助": "BOARDING_ALLOWANCE",
                                "国家助学金": "NATIONAL_GRANT", "雨露计划": "YULU_PLAN", "免学费": "TUITION_WAIVER",
                                "其他": "OTHER"}),
    (IDENTITY_CHECK, "education_level", {"文盲或半文盲": "ILLITERATE", "小学": "PRIMARY", "初中": "JUNIOR",
                                         "高中": "SENIOR", "中专": "SECONDARY_VOCATIONAL",
                                         "大专及以上": "COLLEGE_OR_ABOVE"}),
    (IDENTITY_CHECK, "relation", {"户主": "HEAD", "配偶": "SPOUSE", "子": "SON", "女": "DAUGHTER", "父亲": "FATHER",
                                  "母亲": "MOTHER", "孙子": "GRANDSON", "孙女": "GRANDDAUGHTER", "其他": "OTHER"}),
    (TRAFFIC_ACCIDENT, "casualty", {"死亡": "DEATH", "重伤": "SERIOUS_INJURY", "轻伤": "MINOR_INJURY"}),
    (TRAFFIC_ACCIDENT, "liability", {"全部": "FULL", "主要": "MAJOR", "同等": "EQUAL", "次要": "MINOR",
                                     "无责任": "NONE", "未认定": "UNDETERMINED"}),
    (ASSISTANCE, "assistance_type", {"低保": "MINIMUM_LIVING_GUARANTEE", "特困供养": "EXTREME_POVERTY_SUPPORT",
                                     "困难残疾人生活补贴": "DISABILITY_LIVING_ALLOWANCE",
                                     "重度残疾人护理补贴": "SEVERE_DISABILITY_CARE_ALLOWANCE",
                                     "临时救助": "TEMPORARY_ASSISTANCE"}),
    (ASSISTANCE, "change_type", {"纳入": "ENROLLED", "退出": "EXITED", "发放": "PAID"}),
    (EMPLOYMENT, "transfer_channel", {"有组织转移": "ORGANISED", "自主转移": "SELF_ORGANISED",
                                      "公益性岗位": "PUBLIC_WELFARE_POST", "就近就业": "LOCAL_EMPLOYMENT"}),
    (EMPLOYMENT, "employment_scope", {"县内": "WITHIN_COUNTY", "州内县外": "WITHIN_PREFECTURE",
                                      "区内州外": "WITHIN_REGION", "区外": "OUTSIDE_REGION"}),
    (EMPLOYMENT, "pension_insurance", {"已参保": "INSURED", "未参保": "NOT_INSURED"}),
    (HOUSE_SAFETY, "cause", {"自然灾害": "NATURAL_DISASTER", "鉴定": "ASSESSMENT", "改造竣工": "RENOVATION_COMPLETED",
                             "其他": "OTHER"}),
    (HOUSE_SAFETY, "safety_grade", {"A": "A", "B": "B", "C": "C", "D": "D", "d": "D", "Ｃ": "C"}),
    (HOUSE_SAFETY, "damage", {"无": "NONE", "一般损坏": "MINOR", "严重损坏": "SERIOUS", "倒塌": "COLLAPSED"}),
    (COMMERCIAL_HOUSING, "property_type", {"商品住房": "NEW_HOUSING", "二手住房": "SECOND_HAND_HOUSING",
                                           "商铺": "SHOP", "其他": "OTHER"}),
    (FARM_DISASTER, "disaster_type", {"干旱": "DROUGHT", "洪涝": "FLOOD", "冰雹": "HAIL", "低温冻害": "FROST",
                                      "风灾": "WIND", "病虫害": "PESTS", "动物疫病": "ANIMAL_DISEASE",
                                      "其他": "OTHER"}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_enumerations_map_every_label_to_its_symbol(spec: FeedSpec, field: str, allowed: Mapping[str, str]) -> None:
    for label, symbol in allowed.items():
        assert valid(spec, **{field: label})[field] == symbol, label
        assert valid(spec, **{field: symbol.lower()})[field] == symbol  # the symbol is an alias
    [reason] = reasons_of(spec, **{field: "不详"})
    expected = " / ".join(label for label in allowed if label not in ("d", "Ｃ"))
    assert reason == f"{field}: unknown value '不详' (expected one of {expected})"


# --- each feed's mapping, from a real file --------------------------------------------------------------------


def test_public_opinion_with_and_without_a_person(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "舆情.csv", [
        [" 线索编号", "发现日期", "来源平台", "行政区划代码\u3000", "涉及人员身份证号码", "风险类型", "线索摘要"],
        ["WX-0315", "2024年3月15日", "抖音", VILLAGE, MAN.lower(), "因病",
         f"视频称户主李某重病住院, 身份证{MAN}, 电话138 0013 8000"],
        ["WX-0316", "2024/3/16", "论坛", "６５２７０１１００２０２", "", "饮水", "全村停水三天"],
    ], encoding="gbk")
    summary, publisher = run(PUBLIC_OPINION, path, secrets=[MAN, "13800138000", "138 0013 8000"])
    assert (summary.read, summary.published, summary.encoding) == (2, 2, "gb18030")
    named, village = events(PUBLIC_OPINION, publisher)
    assert keys(PUBLIC_OPINION, publisher) == [person_key(MAN).encode(), OTHER_VILLAGE.encode()]
    assert named["person_key"] == person_key(MAN) and village["person_key"] is None
    assert (named["clue_id"], named["platform"], named["risk_type"], named["village_code"]) == (
        "WX-0315", "DOUYIN", "ILLNESS", VILLAGE)
    assert named["found_date"] == named["occurred_at"] == dt.date(2024, 3, 15)
    # free text has ID and phone numbers masked (the feed has no name column: a name written in it stays)
    assert named["summary"] == "视频称户主李某重病住院, 身份证<id-redacted>, 电话<phone-redacted>"
    assert (village["platform"], village["risk_type"], village["village_code"]) == ("FORUM", "DRINKING_WATER",
                                                                                     OTHER_VILLAGE)
    assert "person_id_number" not in named


def test_student_roll(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "在校生.csv", [
        labels(STUDENT_ROLL),
        ["张小红", GIRL, "女", "博乐市第三中学", "初中", "七年级", "在读", "2024-03-01"],
        ["李小军", BOY.lower(), "1", "博州中等职业技术学校", "中职", "二年级", "休学", "20240415"],
    ], encoding="utf-8-sig")
    summary, publisher = run(STUDENT_ROLL, path, secrets=[GIRL, BOY, BOY.lower()])
    assert summary.published == 2
    girl, boy = events(STUDENT_ROLL, publisher)
    assert (girl["person_key"], girl["sex"], girl["stage"], girl["status"], girl["grade"]) == (
        person_key(GIRL), "F", "JUNIOR", "ENROLLED", "七年级")
    assert girl["school"] == "博乐市第三中学" and girl["status_date"] == girl["occurred_at"] == dt.date(2024, 3, 1)
    assert (boy["person_key"], boy["sex"], boy["stage"], boy["status"]) == (person_key(BOY), "M", "VOCATIONAL",
                                                                            "SUSPENDED")
    assert "student_name" not in girl and "student_id_number" not in girl


def test_student_aid_with_english_aliases_and_an_amount_in_yuan(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "资助.csv", [
        ["student_name", "STUDENT_ID_NUMBER", "programme", "资助金额（元）", "paid_date"],
        ["张小红", GIRL, "营养改善计划", "１,２５０.５", "2024.4.10"],
        ["李小军", BOY, "YULU_PLAN", "0", "2024-04-11"],
    ])
    summary, publisher = run(STUDENT_AID, path, secrets=[GIRL, BOY])
    assert summary.published == 2
    first, second = events(STUDENT_AID, publisher)
    assert (first["programme"], first["amount"], first["paid_date"]) == ("NUTRITION_IMPROVEMENT", Decimal("1250.50"),
                                                                         dt.date(2024, 4, 10))
    assert (second["programme"], second["amount"]) == ("YULU_PLAN", Decimal("0.00"))
    assert second["person_key"] == person_key(BOY)


def test_identity_check(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "户籍比对.csv", [
        labels(IDENTITY_CHECK),
        ["王建国", MAN, "男", "文盲或半文盲", "户主", "博乐市小营盘镇达勒特村3组12号", "2024-05-20"],
        ["马桂英", WOMAN, "F", "大专及以上", "配偶", f"达勒特村3组12号 (联系电话13912345678, 证件{WOMAN})",
         "2024-05-20"],
    ], encoding="gbk")
    summary, publisher = run(IDENTITY_CHECK, path, secrets=[MAN, WOMAN, "13912345678"])
    assert summary.published == 2
    head, wife = events(IDENTITY_CHECK, publisher)
    assert (head["sex"], head["education_level"], head["relation"]) == ("M", "ILLITERATE", "HEAD")
    assert head["address"] == "博乐市小营盘镇达勒特村3组12号" and head["check_date"] == dt.date(2024, 5, 20)
    assert (wife["sex"], wife["education_level"], wife["relation"]) == ("F", "COLLEGE_OR_ABOVE", "SPOUSE")
    assert wife["address"] == "达勒特村3组12号 (联系电话<phone-redacted>, 证件<id-redacted>)"


def test_traffic_accident_with_and_without_a_location(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "事故.csv", [
        ["姓名", "身份证号码", "事故日期", "伤亡情况", "事故地点", "责任认定"],
        ["王建国", MAN, "2024-02-14", "死亡", "G30连霍高速博乐段, 王建国驾驶三轮车", "全部"],
        ["马桂英", WOMAN, "2024-02-15", "轻伤", "", "无责任"],
    ])
    summary, publisher = run(TRAFFIC_ACCIDENT, path, secrets=[MAN, WOMAN])
    death, minor = events(TRAFFIC_ACCIDENT, publisher)
    assert (death["casualty"], death["liability"], death["accident_date"]) == ("DEATH", "FULL", dt.date(2024, 2, 14))
    assert death["location"] == "G30连霍高速博乐段, <name-redacted>驾驶三轮车"  # the row's own name is masked
    assert (minor["casualty"], minor["liability"], minor["location"]) == ("MINOR_INJURY", "NONE", None)
    # the optional column may be left out of the file altogether
    path = write_csv(tmp_path / "事故2.csv", [["姓名", "身份证号码", "事故日期", "伤亡情况", "责任认定"],
                                              ["王建国", MAN, "2024-02-14", "重伤", "未认定"]])
    _, publisher = run(TRAFFIC_ACCIDENT, path, secrets=[MAN])
    [event] = events(TRAFFIC_ACCIDENT, publisher)
    assert (event["casualty"], event["location"], event["liability"]) == ("SERIOUS_INJURY", None, "UNDETERMINED")


def test_social_assistance(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "救助.csv", [
        ["姓名", "身份证号码", "救助类型", "变动类型", "金额(元)", "开始日期", "结束日期"],
        ["马桂英", WOMAN, "低保", "纳入", "520", "2024-01-01", ""],
        ["马桂英", WOMAN, "低保", "退出", "0", "2024-01-01", "2024-06-30"],
        ["王建国", MAN, "临时救助", "发放", "3,000.00", "2024-05-10", "2024-05-10"],
    ])
    summary, publisher = run(ASSISTANCE, path, secrets=[MAN, WOMAN])
    enrolled, exited, paid = events(ASSISTANCE, publisher)
    assert (enrolled["assistance_type"], enrolled["change_type"], enrolled["amount"], enrolled["end_date"]) == (
        "MINIMUM_LIVING_GUARANTEE", "ENROLLED", Decimal("520.00"), None)
    assert enrolled["occurred_at"] == enrolled["start_date"] == dt.date(2024, 1, 1)
    assert (exited["change_type"], exited["end_date"]) == ("EXITED", dt.date(2024, 6, 30))
    assert (paid["assistance_type"], paid["change_type"], paid["amount"]) == ("TEMPORARY_ASSISTANCE", "PAID",
                                                                              Decimal("3000.00"))
    assert [e["person_key"] for e in (enrolled, exited, paid)] == [person_key(WOMAN)] * 2 + [person_key(MAN)]


def test_employment_wage_header_with_and_without_its_unit(tmp_path: Path) -> None:
    header = ["县市", "乡镇", "村", "姓名", "身份证号码", "转移渠道", "转移就业方式", "务工开始日期",
              "上月务工薪酬（元）", "工作单位", "务工结束日期", "养老保险"]
    rows = [["博乐市", "小营盘镇", "达勒特村", "王建国", MAN, "有组织转移", "区外", "2024-03-01", "4,800",
             "江苏某纺织有限公司", "", "已参保"],
            ["博乐市", "小营盘镇", "达勒特村", "马桂英", WOMAN, "公益性岗位", "县内", "2024-01-01", "1800", "护林员",
             "2024-06-15", "未参保"]]
    for variant in ("上月务工薪酬（元）", "上月务工薪酬", " 上月务工薪酬(元) "):
        path = write_csv(tmp_path / "务工.csv", [[variant if h == header[8] else h for h in header], *rows])
        summary, publisher = run(EMPLOYMENT, path, secrets=[MAN, WOMAN])
        assert summary.published == 2, variant
    away, home = events(EMPLOYMENT, publisher)
    assert (away["county"], away["township"], away["village"], away["employer"]) == ("博乐市", "小营盘镇", "达勒特村",
                                                                                    "江苏某纺织有限公司")
    assert (away["transfer_channel"], away["employment_scope"], away["pension_insurance"]) == (
        "ORGANISED", "OUTSIDE_REGION", "INSURED")
    assert away["last_month_wage"] == Decimal("4800.00") and away["end_date"] is None
    assert away["occurred_at"] == away["start_date"] == dt.date(2024, 3, 1)
    assert (home["transfer_channel"], home["employment_scope"], home["pension_insurance"]) == (
        "PUBLIC_WELFARE_POST", "WITHIN_COUNTY", "NOT_INSURED")
    assert home["end_date"] == dt.date(2024, 6, 15)


def test_house_safety_is_keyed_by_the_head(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "住房.csv", [
        labels(HOUSE_SAFETY),
        ["王建国", MAN, VILLAGE, "自然灾害", "D", "倒塌", "2024-06-22"],
        ["马桂英", WOMAN, OTHER_VILLAGE, "改造竣工", "a", "无", "2024年7月1日"],
    ], encoding="gbk")
    summary, publisher = run(HOUSE_SAFETY, path, secrets=[MAN, WOMAN])
    collapsed, renovated = events(HOUSE_SAFETY, publisher)
    assert keys(HOUSE_SAFETY, publisher) == [person_key(MAN).encode(), person_key(WOMAN).encode()]
    assert (collapsed["cause"], collapsed["safety_grade"], collapsed["damage"], collapsed["village_code"]) == (
        "NATURAL_DISASTER", "D", "COLLAPSED", VILLAGE)
    assert (renovated["cause"], renovated["safety_grade"], renovated["damage"]) == ("RENOVATION_COMPLETED", "A", "NONE")
    assert renovated["event_date"] == renovated["occurred_at"] == dt.date(2024, 7, 1)


def test_commercial_housing_floor_area_header_variants(tmp_path: Path) -> None:
    for header in ("建筑面积(平方米)", "建筑面积（平方米）", "floor_area"):
        path = write_csv(tmp_path / "不动产.csv", [
            ["姓名", "身份证号码", "房屋类型", header, "登记日期", "房屋坐落"],
            ["马桂英", WOMAN, "二手住房", "96.456", "2024-04-18", "博乐市青得里大街88号3栋2单元501室"],
        ])
        summary, publisher = run(COMMERCIAL_HOUSING, path, secrets=[WOMAN])
        assert summary.published == 1, header
    [event] = events(COMMERCIAL_HOUSING, publisher)
    assert (event["property_type"], event["floor_area"]) == ("SECOND_HAND_HOUSING", Decimal("96.46"))
    assert event["registration_date"] == event["occurred_at"] == dt.date(2024, 4, 18)
    assert event["location"] == "博乐市青得里大街88号3栋2单元501室"


def test_drinking_water_for_a_village_or_a_household(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "饮水.csv", [
        labels(DRINKING_WATER),
        [VILLAGE, "", "供水保证率、水量、水量", "2024-05-06", "全村夏季停水频繁", ""],
        [VILLAGE, MAN, "水质", "2024-05-06", "入户水样浊度超标", "2024-05-06"],
        [OTHER_VILLAGE, "", "用水方便程度，水质", "2024-05-07", "取水点距离远", "2024-06-01"],
    ])
    summary, publisher = run(DRINKING_WATER, path, secrets=[MAN])
    whole, household, other = events(DRINKING_WATER, publisher)
    assert keys(DRINKING_WATER, publisher) == [VILLAGE.encode(), person_key(MAN).encode(), OTHER_VILLAGE.encode()]
    # several indicators: the schema's symbols, in the feed contract's order, each once
    assert (whole["indicators"], whole["person_key"], whole["resolved_date"]) == (
        ["QUANTITY", "SUPPLY_RATE"], None, None)
    assert (household["indicators"], household["person_key"]) == (["QUALITY"], person_key(MAN))
    assert household["resolved_date"] == household["found_date"] == household["occurred_at"] == dt.date(2024, 5, 6)
    assert other["indicators"] == ["QUALITY", "CONVENIENCE"] and other["village_code"] == OTHER_VILLAGE
    assert other["description"] == "取水点距离远" and other["resolved_date"] == dt.date(2024, 6, 1)


def test_farm_disaster(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "农业灾情.csv", [
        ["行政区划代码", "户主身份证号码", "灾害类型", "受灾作物或畜种", "受灾面积（亩）", "绝收面积（亩）",
         "死亡牲畜（头只）", "直接经济损失（元）", "灾害日期"],
        [VILLAGE, "", "冰雹", "棉花", "1,200.5", "300", "0", "860,000", "2024-06-20"],
        [VILLAGE, WOMAN, "动物疫病", "羊", "0", "0", "35", "42000", "2024-03-02"],
    ], encoding="gbk")
    summary, publisher = run(FARM_DISASTER, path, secrets=[WOMAN])
    village, household = events(FARM_DISASTER, publisher)
    assert keys(FARM_DISASTER, publisher) == [VILLAGE.encode(), person_key(WOMAN).encode()]
    assert (village["disaster_type"], village["affected"], village["person_key"]) == ("HAIL", "棉花", None)
    assert (village["affected_area"], village["lost_area"], village["direct_loss"]) == (
        Decimal("1200.50"), Decimal("300.00"), Decimal("860000.00"))
    assert village["disaster_date"] == village["occurred_at"] == dt.date(2024, 6, 20)
    assert (household["disaster_type"], household["livestock_deaths"], household["affected"]) == (
        "ANIMAL_DISEASE", 35, "羊")


def test_collective_income(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "集体收益.csv", [
        labels(COLLECTIVE_INCOME),
        [VILLAGE, "2023年", "1,260,000", "386,500.50", "1240", "352000"],
        [OTHER_VILLAGE, "2024", "0", "0", "0", "0"],
    ])
    summary, publisher = run(COLLECTIVE_INCOME, path)
    last_year, this_year = events(COLLECTIVE_INCOME, publisher)
    assert keys(COLLECTIVE_INCOME, publisher) == [VILLAGE.encode(), OTHER_VILLAGE.encode()]
    assert (last_year["year"], last_year["operating_income"], last_year["distributable_income"]) == (
        2023, Decimal("1260000.00"), Decimal("386500.50"))
    assert (last_year["beneficiaries"], last_year["previous_distributable_income"]) == (1240, Decimal("352000.00"))
    # dated by its 年度: 1 January of that year (the feed contract gives no day)
    assert last_year["person_key"] is None and last_year["occurred_at"] == dt.date(2023, 1, 1)
    assert this_year["year"] == 2024 and this_year["distributable_income"] == Decimal("0.00")
    assert this_year["occurred_at"] == dt.date(2024, 1, 1)
    assert "report_date" not in last_year


# --- cross-field checks: at the boundary accepted, past it rejected naming the field ------------------------


@pytest.mark.parametrize("spec, boundary, past, reason", [
    (ASSISTANCE, {"start_date": "2024-03-01", "end_date": "2024-03-01"},
     {"start_date": "2024-03-01", "end_date": "2024-02-29"}, "end_date: 结束日期 before 开始日期"),
    (EMPLOYMENT, {"start_date": "2024-03-01", "end_date": "2024-03-01"},
     {"start_date": "2024-03-01", "end_date": "2024-02-29"}, "end_date: 务工结束日期 before 务工开始日期"),
    (DRINKING_WATER, {"found_date": "2024-05-06", "resolved_date": "2024-05-06"},
     {"found_date": "2024-05-06", "resolved_date": "2024-05-05"}, "resolved_date: 解决日期 before 发现日期"),
    (FARM_DISASTER, {"affected_area": "45", "lost_area": "45.00"}, {"affected_area": "45", "lost_area": "45.01"},
     "lost_area: 绝收面积 larger than 受灾面积"),
    (COMMERCIAL_HOUSING, {"floor_area": "0.01"}, {"floor_area": "0"},
     "floor_area: 建筑面积 must be more than 0 square metres"),
    (STUDENT_ROLL, {"student_id_number": GIRL, "sex": "女"}, {"student_id_number": GIRL, "sex": "男"},
     "sex: 性别 does not match the sex encoded in the ID number"),
    (IDENTITY_CHECK, {"id_number": WOMAN, "sex": "2"}, {"id_number": WOMAN, "sex": "M"},
     "sex: 性别 does not match the sex encoded in the ID number"),
], ids=lambda v: v.feed if isinstance(v, FeedSpec) else None)
def test_cross_field_check(tmp_path: Path, spec: FeedSpec, boundary: dict[str, str], past: dict[str, str],
                           reason: str) -> None:
    path = write_csv(tmp_path / "f.csv", [labels(spec), row_of(spec, **boundary), row_of(spec, **past)])
    summary, publisher = run(spec, path)
    assert (summary.published, summary.rejected) == (1, 1)
    assert summary.rejects == [(3, (reason,))]
    [letter] = [CODEC.decode(m.value, expect="povwatch.DeadLetter").record for m in publisher.on(spec.dlq)]
    assert letter["reasons"] == [reason] and letter["source"]["row"] == 3


def test_collective_income_is_dated_1_january_of_its_year_and_next_year_is_refused(tmp_path: Path) -> None:
    # TODAY is 2024-07-01: 年度 2024 (dated 2024-01-01) is the last one accepted, 2025 is in the future
    path = write_csv(tmp_path / "f.csv", [labels(COLLECTIVE_INCOME), row_of(COLLECTIVE_INCOME, year="2024"),
                                          row_of(COLLECTIVE_INCOME, year="2025"),
                                          row_of(COLLECTIVE_INCOME, year="2000")])
    summary, publisher = run(COLLECTIVE_INCOME, path)
    assert (summary.published, summary.rejected) == (2, 1)
    assert summary.rejects == [(3, ("year: year 2025 outside 2000-2024",))]
    assert [(e["year"], e["occurred_at"]) for e in events(COLLECTIVE_INCOME, publisher)] == [
        (2024, dt.date(2024, 1, 1)), (2000, dt.date(2000, 1, 1))]
    [letter] = [CODEC.decode(m.value, expect="povwatch.DeadLetter").record
                for m in publisher.on(COLLECTIVE_INCOME.dlq)]
    assert letter["reasons"] == ["year: year 2025 outside 2000-2024"] and letter["source"]["row"] == 3


def test_an_exit_from_assistance_says_when() -> None:
    assert valid(ASSISTANCE, change_type="退出", end_date="2024-06-30")["change_type"] == "EXITED"
    assert reasons_of(ASSISTANCE, change_type="退出", end_date="") == (
        "end_date: missing 结束日期 (变动类型 退出 ends the assistance on that date)",)
    for other in ("纳入", "发放"):
        assert valid(ASSISTANCE, change_type=other, end_date="")["end_date"] is None


@pytest.mark.parametrize("spec", [ASSISTANCE, EMPLOYMENT, DRINKING_WATER], ids=lambda s: s.feed)
def test_an_open_end_date_is_not_checked(spec: FeedSpec) -> None:
    end = {"assistance": "end_date", "employment": "end_date", "drinking-water": "resolved_date"}[spec.feed]
    assert valid(spec, **{end: ""})[end] is None


@pytest.mark.parametrize("year, reason", [
    ("1999", "year: year 1999 outside 2000-2024"),
    ("2025", "year: year 2025 outside 2000-2024"),
    ("二〇二三", "year: not a year: '二〇二三'"),
])
def test_collective_income_year_between_2000_and_this_year(year: str, reason: str) -> None:
    assert valid(COLLECTIVE_INCOME, year="2000")["year"] == 2000
    assert valid(COLLECTIVE_INCOME, year="2024")["year"] == 2024
    assert reasons_of(COLLECTIVE_INCOME, year=year) == (reason,)


@pytest.mark.parametrize("spec, field", [
    (STUDENT_AID, "amount"), (ASSISTANCE, "amount"), (EMPLOYMENT, "last_month_wage"),
    (COMMERCIAL_HOUSING, "floor_area"), (FARM_DISASTER, "affected_area"), (FARM_DISASTER, "lost_area"),
    (FARM_DISASTER, "direct_loss"), (COLLECTIVE_INCOME, "operating_income"),
    (COLLECTIVE_INCOME, "distributable_income"), (COLLECTIVE_INCOME, "previous_distributable_income"),
], ids=lambda v: v if isinstance(v, str) else v.feed)
def test_money_and_areas_are_never_negative(spec: FeedSpec, field: str) -> None:
    assert reasons_of(spec, **{field: "-1"}) == (f"{field}: negative amount",)
    assert not any("negative" in r for r in reasons_of(spec, **{field: "-0"}))


@pytest.mark.parametrize("spec, field", [(FARM_DISASTER, "livestock_deaths"), (COLLECTIVE_INCOME, "beneficiaries")],
                         ids=lambda v: v if isinstance(v, str) else v.feed)
def test_counts_are_whole_and_never_negative(spec: FeedSpec, field: str) -> None:
    assert reasons_of(spec, **{field: "-3"}) == (f"{field}: negative number",)
    assert reasons_of(spec, **{field: "2.5"}) == (f"{field}: not a whole number: '2.5'",)
    assert valid(spec, **{field: "12.0"})[field] == 12


def test_several_water_indicators_one_unknown_rejects_the_cell() -> None:
    assert reasons_of(DRINKING_WATER, indicators="水质、水压") == (
        "indicators: unknown value '水压' (expected one of 水量 / 水质 / 用水方便程度 / 供水保证率)",)
    assert reasons_of(DRINKING_WATER, indicators="、") == (
        "indicators: no value (expected one or more of 水量 / 水质 / 用水方便程度 / 供水保证率, joined by 、)",)
    assert valid(DRINKING_WATER, indicators="QUALITY; 水量")["indicators"] == ["QUANTITY", "QUALITY"]


# --- messy rows, as a department's file brings them -----------------------------------------------------------

ID_FIELD = {s.feed: next((c.field for c in s.columns if c.sensitive == "id"), None) for s in MINE}
DATE_FIELD = {s.feed: s.occurred_at for s in MINE}  # the column the event is dated by: a date, or 年度
# what a messy file brings in the column an event is dated by, and the reason (TODAY is 2024-07-01)
DATED_BY_MESS: dict[str, Callable[[str], list[tuple[dict[str, str], str]]]] = {
    "Date": lambda f: [
        ({f: "2024-02-30"}, f"{f}: not a real date: 2024-02-30"),
        ({f: "3月5日"}, f"{f}: not a date: '3月5日'"),
        ({f: "1899-12-31"}, f"{f}: date before 1900: 1899-12-31"),
        ({f: "2024-07-02"}, f"{f}: date in the future: 2024-07-02"),
    ],
    "Year": lambda f: [  # a year-only feed (dated 1 January of its 年度)
        ({f: "2024-01-20"}, f"{f}: not a year: '2024-01-20'"),  # a date in the 年度 column
        ({f: "24年"}, f"{f}: not a year: '24'"),
        ({f: "1999"}, f"{f}: year 1999 outside 2000-2024"),
        ({f: "2025"}, f"{f}: year 2025 outside 2000-2024"),
    ],
}
ENUM_FIELD = {PUBLIC_OPINION.feed: "platform", STUDENT_ROLL.feed: "status", STUDENT_AID.feed: "programme",
              IDENTITY_CHECK.feed: "education_level", TRAFFIC_ACCIDENT.feed: "casualty",
              ASSISTANCE.feed: "assistance_type", EMPLOYMENT.feed: "transfer_channel",
              HOUSE_SAFETY.feed: "safety_grade",
              COMMERCIAL_HOUSING.feed: "property_type", DRINKING_WATER.feed: "indicators",
              FARM_DISASTER.feed: "disaster_type", COLLECTIVE_INCOME.feed: "year"}
AMOUNT_FIELD = {STUDENT_AID.feed: "amount", ASSISTANCE.feed: "amount", EMPLOYMENT.feed: "last_month_wage",
                COMMERCIAL_HOUSING.feed: "floor_area", FARM_DISASTER.feed: "direct_loss",
                COLLECTIVE_INCOME.feed: "operating_income"}
REQUIRED_TEXT = {PUBLIC_OPINION.feed: "summary", STUDENT_ROLL.feed: "school", STUDENT_AID.feed: "paid_date",
                 IDENTITY_CHECK.feed: "address", TRAFFIC_ACCIDENT.feed: "liability", ASSISTANCE.feed: "change_type",
                 EMPLOYMENT.feed: "employer", HOUSE_SAFETY.feed: "village_code", COMMERCIAL_HOUSING.feed: "location",
                 DRINKING_WATER.feed: "description", FARM_DISASTER.feed: "affected",
                 COLLECTIVE_INCOME.feed: "beneficiaries"}


@pytest.mark.parametrize("spec", MINE, ids=lambda s: s.feed)
def test_messy_rows_are_rejected_with_their_reasons(tmp_path: Path, spec: FeedSpec) -> None:
    label = {c.field: c.label for c in spec.columns}
    id_field, date_field, enum_field = ID_FIELD[spec.feed], DATE_FIELD[spec.feed], ENUM_FIELD[spec.feed]
    missing = REQUIRED_TEXT[spec.feed]
    [dated_by] = [c for c in spec.columns if c.field == date_field]
    cases: list[tuple[dict[str, str], str]] = [
        ({enum_field: "未知"}, f"{enum_field}: unknown value '未知'" if enum_field != "year"
         else "year: not a year: '未知'"),
        *DATED_BY_MESS[type(dated_by.parser).__name__](date_field),
        ({missing: "  "}, f"{missing}: missing {label[missing]}"),
    ]
    if spec.feed in AMOUNT_FIELD:
        cases.append(({AMOUNT_FIELD[spec.feed]: "-120.5"}, f"{AMOUNT_FIELD[spec.feed]}: negative amount"))
        cases.append(({AMOUNT_FIELD[spec.feed]: "1.2E+05"}, f"{AMOUNT_FIELD[spec.feed]}: not an amount: '1.2E+05'"))
    secrets: list[str] = []
    if id_field is not None:
        good = spec.example[id_field].upper()
        bad = wrong_check(good)
        secrets += [good, bad, bad[:17]]
        cases.append(({id_field: bad}, f"{id_field}: invalid ID number: check character is {bad[17]}, "
                                       f"expected {good[17]}"))
        cases.append(({id_field: good[:16]}, f"{id_field}: invalid ID number: has 16 characters"))
    if "village_code" in label:
        cases.append(({"village_code": "6527011002"}, "village_code: region code must be 12 digits, got 10 characters"))
    rows = [row_of(spec, **cells) for cells, _ in cases]
    path = write_csv(tmp_path / "messy.csv", [labels(spec), row_of(spec), *rows, row_of(spec)])
    names = [spec.example[c.field] for c in spec.columns if c.sensitive == "name"]
    summary, publisher = run(spec, path, secrets=[*secrets, *names])
    # the good row is published once, its copy at the end is a duplicate, every messy row is rejected
    assert (summary.read, summary.published, summary.duplicates, summary.rejected) == (len(cases) + 2, 1, 1,
                                                                                        len(cases))
    for (row, reasons), (_, expected) in zip(summary.rejects, cases, strict=True):
        assert len(reasons) == 1 and reasons[0].startswith(expected), (row, reasons, expected)
    letters = [CODEC.decode(m.value, expect="povwatch.DeadLetter").record for m in publisher.on(spec.dlq)]
    assert [letter["source"]["row"] for letter in letters] == list(range(3, 3 + len(cases)))
    for letter in letters:
        assert set(letter["fields"]) == {c.field for c in spec.columns}
        for col in spec.columns:
            if col.sensitive and letter["fields"][col.field]:
                assert letter["fields"][col.field] == f"<redacted {col.sensitive}>"


@pytest.mark.parametrize("spec", MINE, ids=lambda s: s.feed)
def test_a_row_with_everything_wrong_lists_every_reason(spec: FeedSpec) -> None:
    cells = {c.field: "？？" for c in spec.columns}
    reasons = reasons_of(spec, **cells)
    assert [r.split(":")[0] for r in reasons] == [
        c.field for c in spec.columns if type(c.parser).__name__ not in ("Text",)]
    assert all("Traceback" not in r for r in reasons)


def test_a_missing_required_column_names_it(tmp_path: Path) -> None:
    from schemas.errors import InputFileError

    path = write_csv(tmp_path / "f.csv", [[h for h in labels(FARM_DISASTER) if h != "绝收面积(亩)"], ["x"] * 8])
    with pytest.raises(InputFileError, match=r"missing column: 绝收面积\(亩\) \(lost_area\)"):
        run(FARM_DISASTER, path)


def _rows(spec: FeedSpec, n: int) -> Sequence[Sequence[str]]:
    return [labels(spec), *([row_of(spec)] * n)]


def test_an_exact_duplicate_is_published_once(tmp_path: Path) -> None:
    summary, publisher = run(DRINKING_WATER, write_csv(tmp_path / "f.csv", _rows(DRINKING_WATER, 3)))
    assert (summary.published, summary.duplicates) == (1, 2)
