"""A small, hand-written roster and five department files whose alerts are known in advance.

Two villages. Village A (652701101201) holds H01-H03 and H09; village B (652722102203) holds H04-H08, five
households hit by one flood within five days (a regional alert). Each expected alert is argued next to the
rows that cause it. Dates lie in 2025, before any run of these tests.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field
from pathlib import Path

from openpyxl import Workbook

from connectors.idcard import check_character

VILLAGE_A = "652701101201"
VILLAGE_B = "652722102203"


def make_id(county: str, born: str, seq: int, male: bool) -> str:
    """An 18-character ID number with a valid check character (odd sequence = male)."""
    serial = seq * 2 + (1 if male else 0)
    first17 = f"{county}{born}{serial:03d}"
    return first17 + check_character(first17)


def bad_check(number: str) -> str:
    last = number[-1]
    return number[:-1] + ("0" if last != "0" else "1")


@dataclass
class Person:
    household: str
    name: str
    id: str
    relation: str
    male: bool


@dataclass
class Household:
    hid: str
    village: str
    category: str
    status: str
    labour: str
    income: int
    members: list[Person] = field(default_factory=list)


@dataclass
class Scenario:
    roster: Path
    feeds: list[tuple[str, str, Path]]
    expected_alerts: set[tuple[str, str, str]]
    households: frozenset[str]  # every household of the roster (H01-H09)
    expected_regional: set[str]
    expected_counts: dict[str, dict[str, int]]
    ids: list[str]  # every raw ID number written into any file (normalised 18-char and legacy 15-digit)
    names: list[str]  # every name written into any file
    extra_hospitalization: Path  # for the restart test
    extra_expected: tuple[str, str, str]


def _csv(path: Path, header: list[str], rows: list[list[str]], encoding: str) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))


def build(directory: Path) -> Scenario:
    directory.mkdir(parents=True, exist_ok=True)
    n = iter(range(1, 500))
    hh: dict[str, Household] = {}

    def household(hid: str, village: str, status: str, income: int, members: list[tuple[str, str, str, bool]],
                  category: str = "脱贫不稳定户", labour: str = "有劳动能力") -> Household:
        h = Household(hid, village, category, status, labour, income)
        for name, relation, born, male in members:
            h.members.append(Person(hid, name, make_id(village[:6], born, next(n), male), relation, male))
        hh[hid] = h
        return h

    # H01: 监测中, 8000 x 4 = 32000 a year
    household("H01", VILLAGE_A, "监测中", 8000, [("艾力江", "户主", "19750302", True),
                                              ("古丽娜", "配偶", "19780611", False),
                                              ("买买提", "子", "20140901", True), ("吐尔逊", "父亲", "19500115", True)])
    # H02: 未纳入, 12000 x 3 = 36000
    household("H02", VILLAGE_A, "未纳入", 12000, [("王建国", "户主", "19800720", True),
                                               ("李秀英", "配偶", "19820305", False),
                                               ("王小明", "子", "20080417", True)], category="一般农户")
    # H03: 监测中, 6000 x 2 = 12000
    household("H03", VILLAGE_A, "监测中", 6000, [("巴特尔", "户主", "19690808", True),
                                              ("其其格", "配偶", "19710909", False)],
              category="边缘易致贫户", labour="弱劳动能力")
    # H04-H08 in village B: 10000 x 3 = 30000 each
    couples = [("张伟", "刘芳"), ("赵强", "陈静"), ("孙磊", "周敏"), ("吴涛", "郑丽"), ("冯军", "何娟")]
    for i, (head, spouse) in enumerate(couples):
        household(f"H0{4 + i}", VILLAGE_B, "监测中", 10000,
                  [(head, "户主", f"197{i}0101", True), (spouse, "配偶", f"197{i}0202", False),
                   (head[0] + "小" + "宝", "女", f"200{i}0303", False)])
    # H09: 风险消除, 9000 x 2 = 18000; its head has a legacy 15-digit number in the vehicle file
    household("H09", VILLAGE_A, "风险消除", 9000, [("马福贵", "户主", "19620505", True),
                                                ("马桂兰", "配偶", "19640606", False)],
              category="脱贫户")
    outsider = Person("--", "陌生人", make_id("652723", "19850101", next(n), True), "户主", True)

    def p(hid: str, relation: str) -> Person:
        return next(m for m in hh[hid].members if m.relation == relation)

    roster = directory / "roster.csv"
    rows = []
    for h in hh.values():
        for m in h.members:
            rows.append([h.hid, m.name, m.id, "男" if m.male else "女", m.relation, h.village, h.category, h.status,
                         h.labour, str(h.income), str(len(h.members))])
    _csv(roster, ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态",
                  "劳动能力", "上年人均纯收入", "家庭人口数"], rows, "utf-8-sig")

    expected: set[tuple[str, str, str]] = set()
    counts: dict[str, dict[str, int]] = {}

    # registration-change, GBK
    reg = directory / "registration-change.csv"
    _csv(reg, ["姓名", "身份证号码", "变动类型", "变动日期", "备注"], [
        [p("H01", "父亲").name, p("H01", "父亲").id, "死亡", "2025/6/1", ""],          # age 75 -> MEDIUM
        [p("H02", "户主").name, p("H02", "户主").id, "死亡", "2025年6月2日", "车祸"],     # age 44 -> HIGH
        [p("H03", "配偶").name, p("H03", "配偶").id, "迁出", "20250603", ""],           # no alert
        [outsider.name, outsider.id, "死亡", "2025-06-04", ""],                         # not in roster: nothing
        [p("H04", "户主").name, bad_check(p("H04", "户主").id), "死亡", "2025-06-05", ""],  # bad check character
        [p("H05", "户主").name, p("H05", "户主").id, "失踪", "2025-06-06", ""],          # unknown change type
    ], "gbk")
    expected |= {("H01", "DEATH_IN_HOUSEHOLD", "MEDIUM"), ("H02", "DEATH_IN_HOUSEHOLD", "HIGH")}
    counts["registration-change"] = {"read": 6, "published": 4, "rejected": 2, "duplicates": 0}

    # hospitalization, GBK, amounts with thousands separators
    hosp = directory / "hospitalization.csv"
    h02_child = [p("H02", "子").name, p("H02", "子").id, "阑尾炎", "2025-05-01", "4", "3,000.00", "500", "2025-05-05"]
    _csv(hosp, ["姓名", "身份证号码", "疾病名称", "入院日期", "住院天数", "医疗总费用", "个人自付金额", "结算日期"], [
        # H01: 14500 < 50% of 32000, but >= 10000 -> MEDIUM
        [p("H01", "户主").name, p("H01", "户主").id, "脑梗死", "2025/3/5", "12", "38,200.00", "14500", "2025-03-18"],
        # H03: 3000 alone is nothing; +4000 = 7000 >= 50% of 12000 -> HIGH on the second stay
        [p("H03", "户主").name, p("H03", "户主").id, "肺炎", "20250110", "6", "9,000", "3000", "2025-01-16"],
        [p("H03", "配偶").name, p("H03", "配偶").id, "骨折", "2025-04-10", "9", "12,000", "4,000.00", "2025-04-19"],
        h02_child,                                                                        # 500: nothing
        h02_child,                                                                        # exact duplicate
        # negative out-of-pocket
        [p("H02", "户主").name, p("H02", "户主").id, "肺炎", "2025-04-01", "5", "6200", "-30", "2025-04-06"],
        [p("H02", "配偶").name, p("H02", "配偶").id, "肺炎", "2099-04-01", "5", "6200", "300", "2099-04-06"],  # future
    ], "gbk")
    expected |= {("H01", "MEDICAL_EXPENSE", "MEDIUM"), ("H03", "MEDICAL_EXPENSE", "HIGH")}
    counts["hospitalization"] = {"read": 7, "published": 4, "rejected": 2, "duplicates": 1}

    # disaster-loss, UTF-8 with BOM
    dis = directory / "disaster-loss.csv"
    flood = []
    for i, hid in enumerate(["H04", "H05", "H06", "H07", "H08"]):
        damage = "倒塌" if hid == "H04" else "一般损坏"
        flood.append([p(hid, "户主").name, p(hid, "户主").id, VILLAGE_B, "洪涝", f"2025-07-0{1 + i}", "0", "0", damage,
                      "2000"])
        expected.add((hid, "DISASTER_LOSS", "HIGH" if hid == "H04" else "MEDIUM"))
    _csv(dis, ["户主姓名", "户主身份证号码", "行政区划代码", "灾害类型", "灾害发生日期", "死亡人数", "受伤人数",
               "房屋损毁", "直接经济损失"], flood + [
        # H09: loss 10000 >= 50% of 18000 -> HIGH
        [p("H09", "户主").name, p("H09", "户主").id, VILLAGE_A, "火灾", "2025-08-01", "0", "1", "无", "10,000"],
        [p("H02", "户主").name, p("H02", "户主").id, VILLAGE_A, "火灾", "2025-08-02", "0", "0", "烧毁", "100"],  # label
        [p("H03", "户主").name, p("H03", "户主").id, "65270110", "火灾", "2025-08-03", "0", "0", "无", "100"],  # code
    ], "utf-8-sig")
    expected.add(("H09", "DISASTER_LOSS", "HIGH"))
    counts["disaster-loss"] = {"read": 8, "published": 6, "rejected": 2, "duplicates": 0}

    # dropout, XLSX with a real date cell
    drop = directory / "dropout.xlsx"
    book = Workbook()
    sheet = book.active
    sheet.append(["学生姓名", "学生身份证号码", "学校名称", "学段", "年级", "辍学日期"])
    sheet.append([p("H01", "子").name, p("H01", "子").id, "博乐市第一小学", "小学", "五年级", dt.datetime(2025, 3, 1)])
    sheet.append([p("H02", "子").name, p("H02", "子").id, "博乐市高级中学", "高中", "高二", "2025-03-02"])  # no alert
    sheet.append([p("H03", "户主").name, "", "精河县第二中学", "初中", "初二", "2025-03-03"])            # missing ID
    book.save(drop)
    expected.add(("H01", "SCHOOL_DROPOUT", "HIGH"))
    counts["dropout"] = {"read": 3, "published": 2, "rejected": 1, "duplicates": 0}

    # vehicle-purchase, plain UTF-8, messy headers, a legacy 15-digit number
    veh = directory / "vehicle-purchase.csv"
    legacy = p("H09", "户主").id[:6] + p("H09", "户主").id[8:17]
    _csv(veh, [" 姓名 ", "身份证号码\u3000", "车辆类型", "品牌型号", "购买日期", "上牌日期", "  购车价格（元）"], [
        [p("H01", "配偶").name, p("H01", "配偶").id.lower(), "小型轿车", "比亚迪秦", "2025-09-01", "2025-09-05",
         "８５,０００"],                                                                    # 监测中 -> LOW
        [p("H02", "户主").name, p("H02", "户主").id, "小型轿车", "大众朗逸", "2025-09-02", "2025-09-06", ""],  # 未纳入
        [p("H09", "户主").name, legacy, "轻型货车", "五菱", "2025-09-03", "2025-09-07", "40000"],  # 风险消除: nothing
        # plate registered before the purchase
        [p("H03", "户主").name, p("H03", "户主").id, "摩托车", "豪爵", "2025-09-09", "2025-09-01", "6000"],
    ], "utf-8")
    expected.add(("H01", "ASSET_PURCHASE", "LOW"))
    counts["vehicle-purchase"] = {"read": 4, "published": 3, "rejected": 1, "duplicates": 0}

    # for the restart test: H01's second stay, 2000 + 14500 = 16500 >= 16000 (50% of 32000) -> HIGH
    extra = directory / "hospitalization-2.csv"
    _csv(extra, ["姓名", "身份证号码", "疾病名称", "入院日期", "住院天数", "医疗总费用", "个人自付金额", "结算日期"], [
        [p("H01", "配偶").name, p("H01", "配偶").id, "胆结石", "2025-10-01", "3", "5000", "2000", "2025-10-04"],
    ], "gbk")

    people = [m for h in hh.values() for m in h.members] + [outsider]
    return Scenario(
        roster=roster,
        feeds=[("public-security", "registration-change", reg), ("medical-security", "hospitalization", hosp),
               ("emergency", "disaster-loss", dis), ("education", "dropout", drop),
               ("public-security", "vehicle-purchase", veh)],
        expected_alerts=expected,
        households=frozenset(hh),
        expected_regional={VILLAGE_B},
        expected_counts=counts,
        ids=[m.id for m in people] + [legacy],
        names=[m.name for m in people],
        extra_hospitalization=extra,
        extra_expected=("H01", "MEDICAL_EXPENSE", "HIGH"),
    )
