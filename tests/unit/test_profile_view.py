"""The household profile's view model (services/cases/profile_view.py): a pure function from the roster rows, the
stored profile and the alerts to what `povwatch household show` and the desk show, with the connectors' Chinese
headers and values."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from services.cases.elimination import PROFILE, ROSTER, IncomeStanding
from services.cases.profile_view import (
    DOMAINS,
    OpenAlert,
    RosterHousehold,
    RosterMember,
    StoredProfile,
    age_on,
    build_profile_view,
    field_labels,
    field_text,
    render_profile_text,
)
from services.cases.views import to_json

TODAY = dt.date(2026, 3, 10)
UPDATED = dt.datetime(2026, 3, 1, 8, 30, tzinfo=dt.UTC)
HOUSEHOLD = RosterHousehold("652701100201", "MARGINAL", "MONITORING", "WEAK", 3, Decimal("8200.00"))
MEMBERS = [
    RosterMember("pk-son", "艾力·买买提", "子", "M", dt.date(2012, 9, 1)),
    RosterMember("pk-head", "买买提·艾力", "户主", "M", dt.date(1970, 3, 11)),
    RosterMember("pk-wife", "古丽娜尔", "配偶", "F", dt.date(1973, 7, 19)),
]
FACTS = [
    {"domain": "住房", "topic": "events.housing.house-safety", "department": "housing", "feed": "住房安全",
     "event_id": "ev-house", "person_key": "pk-head", "day": "2025-06-22",
     "values": {"village_code": "652701100201", "cause": "NATURAL_DISASTER", "safety_grade": "C",
                "damage": "SERIOUS", "event_date": "2025-06-22", "ingested_on": "2025-06-25"}},
    {"domain": "收入", "topic": "events.statistics.household-income", "department": "statistics", "feed": "住户收入",
     "event_id": "ev-income", "person_key": "pk-head", "day": "2025-01-01",
     "values": {"year": "2025", "household_size": "3", "net_income": "24600.00",
                "per_capita_net_income": "8200.00"}},
    {"domain": "饮水", "topic": "events.water.drinking-water", "department": "water", "feed": "安全饮水",
     "event_id": "ev-water", "person_key": None, "day": "2025-05-02",
     "values": {"indicators": "QUALITY、SUPPLY_RATE"}},
    {"domain": "报告", "topic": "events.intake.cadre-visit", "department": "intake", "feed": "基层干部排查",
     "event_id": "ev-visit", "person_key": "pk-stranger", "day": "2025-07-01",
     "values": {"channel": "CADRE_SCREENING", "risk_type": "ILLNESS", "visit_result": "AT_RISK",
                "description": "户主住院"}},
]
PROFILE_ROW = StoredProfile("652701100201", FACTS, 2025, Decimal("8200.00"), UPDATED)
ALERTS = [
    OpenAlert(7, 3, "HOUSING_UNSAFE", "HIGH", "OPEN", dt.datetime(2025, 6, 26, tzinfo=dt.UTC)),
    OpenAlert(5, 3, "MEDICAL_EXPENSE", "MEDIUM", "ACKNOWLEDGED", dt.datetime(2025, 3, 20, tzinfo=dt.UTC)),
    OpenAlert(6, 3, "SCHOOL_DROPOUT", "HIGH", "RESOLVED", dt.datetime(2025, 4, 1, tzinfo=dt.UTC)),
]
INCOME = IncomeStanding(Decimal("8200.00"), 2025, Decimal("9000"), PROFILE)


def view():  # noqa: ANN201
    return build_profile_view("H-1", household=HOUSEHOLD, members=MEMBERS, profile=PROFILE_ROW, alerts=ALERTS,
                              case_id=3, income=INCOME, today=TODAY)


def test_headers_and_values_come_from_the_connector_declarations() -> None:
    labels = field_labels("events.housing.house-safety")
    assert labels == {"village_code": "行政区划代码", "cause": "事由", "safety_grade": "鉴定等级", "damage": "损毁程度",
                      "event_date": "日期"}  # the name and ID columns are never shown (nor sent)
    assert field_text("events.housing.house-safety", "cause", "NATURAL_DISASTER") == "自然灾害"
    assert field_text("events.housing.house-safety", "damage", "SERIOUS") == "严重损坏"
    assert field_text("events.water.drinking-water", "indicators", "QUALITY、SUPPLY_RATE") == "水质、供水保证率"
    assert field_text("events.medical-security.insurance", "sex", "F") == "女"
    assert field_text("events.medical-security.insurance", "enrolment_status", "SUSPENDED") == "停保"
    assert field_text("events.statistics.household-income", "net_income", "24600.00") == "24600.00"
    assert field_text("events.intake.cadre-visit", "risk_type", "ILLNESS") == "因病"
    assert field_text("events.no.such-topic", "x", "SYMBOL") == "SYMBOL"


def test_the_view_model() -> None:
    v = view()
    assert (v.household_id, v.village_code, v.in_roster) == ("H-1", "652701100201", True)
    assert (v.category_label, v.monitoring_label, v.labour_label, v.household_size) == (
        "边缘易致贫户", "监测中", "弱劳动能力", 3)
    assert [(m.relation, m.name, m.sex, m.age) for m in v.members] == [
        ("户主", "买买提·艾力", "男", 55), ("配偶", "古丽娜尔", "女", 52), ("子", "艾力·买买提", "男", 13)]
    assert [f.domain for f in v.facts] == ["收入", "住房", "饮水", "报告"]  # DOMAINS order
    income, house, water, visit = v.facts
    assert (house.department_name, house.feed, house.day, house.person) == (
        "住建", "住房安全", dt.date(2025, 6, 22), "买买提·艾力 (户主)")
    assert [(f.label, f.value) for f in house.fields] == [
        ("行政区划代码", "652701100201"), ("事由", "自然灾害"), ("鉴定等级", "C"), ("损毁程度", "严重损坏"),
        ("日期", "2025-06-22"), ("报送日期", "2025-06-25")]
    assert [(f.label, f.value) for f in income.fields] == [
        ("年度", "2025"), ("家庭人口数", "3"), ("家庭纯收入", "24600.00"), ("人均纯收入", "8200.00")]
    assert (water.person, water.fields[0].label, water.fields[0].value) == (None, "问题指标", "水质、供水保证率")
    assert visit.department_name == "基层干部排查" and visit.person is None  # not a member: no name shown
    assert [(f.label, f.value) for f in visit.fields][:3] == [("渠道", "基层干部排查"), ("风险类型", "因病"),
                                                              ("情况描述", "户主住院")]
    assert [(a.id, a.rule, a.title, a.status_label) for a in v.alerts] == [
        (5, "MEDICAL_EXPENSE", "医疗支出", "已确认"), (7, "HOUSING_UNSAFE", "住房不安全", "待处理")]  # resolved: out
    assert v.income is not None and v.income.below
    assert v.income.text == "人均纯收入 8200 元 (2025 年, 统计局住户收入), 本县标准 9000 元: 低于标准"


def test_the_text_rendering() -> None:
    text = render_profile_text(view())
    lines = text.splitlines()
    assert lines[0] == "户 H-1  村 652701100201  监测中 · 边缘易致贫户 · 弱劳动能力 · 3 人"
    assert lines[1] == "收入: 人均纯收入 8200 元 (2025 年, 统计局住户收入), 本县标准 9000 元: 低于标准"
    assert "  户主  买买提·艾力  男  55 岁" in lines
    assert "  住房  2025-06-22  住建 · 住房安全  买买提·艾力 (户主)" in lines
    assert ("        行政区划代码 652701100201; 事由 自然灾害; 鉴定等级 C; 损毁程度 严重损坏; 日期 2025-06-22; "
            "报送日期 2025-06-25") in lines
    assert "未解除预警 (案件 3):" in lines
    assert "  预警 7  HOUSING_UNSAFE 住房不安全  高  待处理  2025-06-26" in lines
    assert "SCHOOL_DROPOUT" not in text and "pk-" not in text


def test_the_json_rendering() -> None:
    data = json.loads(to_json(view()))
    assert data["household_id"] == "H-1" and data["income"]["per_capita"] == "8200.00"
    assert data["facts"][1]["fields"][1] == {"name": "cause", "label": "事由", "value": "自然灾害"}
    assert [m["name"] for m in data["members"]] == ["买买提·艾力", "古丽娜尔", "艾力·买买提"]
    assert data["profile_updated_at"] == "2026-03-01T08:30:00+00:00"


def test_a_household_without_profile_or_without_roster_rows() -> None:
    bare = build_profile_view("H-2", household=HOUSEHOLD, members=[], profile=None, alerts=[], case_id=None,
                              income=IncomeStanding(Decimal("9100"), 2025, Decimal("9000"), ROSTER), today=TODAY)
    assert bare.facts == () and bare.profile_updated_at is None and bare.alerts == ()
    text = render_profile_text(bare)
    assert "(尚无画像: 该户没有预警, 或案件同步尚未收到)" in text and "未解除预警: 无在办案件" in text
    assert "人均纯收入 9100 元 (2025 年, 花名册上年人均纯收入), 本县标准 9000 元: 不低于标准" in text
    stranger = build_profile_view("H-3", household=None, members=[], profile=PROFILE_ROW, alerts=[], case_id=None,
                                  income=None, today=TODAY)
    assert (stranger.in_roster, stranger.village_code, stranger.labour_label) == (False, "652701100201", None)
    assert render_profile_text(stranger).splitlines()[0] == "户 H-3  村 652701100201  (不在案件库花名册中)"


def test_ages_and_domains() -> None:
    assert (age_on(dt.date(2000, 3, 10), TODAY), age_on(dt.date(2000, 3, 11), TODAY)) == (26, 25)
    assert DOMAINS == ("收入", "就业", "健康", "教育", "住房", "饮水", "资产", "救助", "灾害", "报告", "户籍")
