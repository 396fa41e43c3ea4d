"""A synthetic Bortala population and department feed files, seeded with known risk events and bad rows.

`generate()` writes the bureau's roster, the five headline feeds of docs/feeds.md (mixed encodings and formats, to
exercise the connectors), a file for every other feed of the catalogue (services/demo/feeds.py: derived from each
feed's declaration, facts about roster members that raise no alert) and the intake requests to post, and returns
what it seeded on purpose: the household alerts and regional alerts the monitor must raise, and how many rows of
each file there are, how many are invalid and how many repeat another. Everything is synthetic; no real person is
described.

The expected alerts are not hand-computed: every seeded event is also run through the pure rules of
`services.monitor.rules` (hospitalisations in file order, with the household's history), and each scenario checks
that the rules give the severity it was designed for, so the scenarios and the rules cannot drift apart silently.
Deterministic for a given seed and `today`; all valid event dates lie within the 18 months up to `today`.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import load_workbook

from connectors.catalog import EVENT_FEEDS
from connectors.idcard import check_character
from schemas.catalog import EVENT_FEEDS as EVENT_FEED_LIST
from schemas.catalog import INTAKE_CHANNELS, event_feed
from services.demo import feeds as F
from services.demo.scenarios import Designed, designed_rows
from services.intake.mapping import MODELS
from services.monitor import household_rules as HR
from services.monitor import rules as R

__all__ = ["ExpectedAlert", "DemoFiles", "generate", "write_manifest", "COUNTIES", "ROSTER_HEADER", "FEED_HEADERS"]

HIGH, MEDIUM, LOW = R.Severity.HIGH, R.Severity.MEDIUM, R.Severity.LOW
INTAKE_PER_CHANNEL = 30  # valid reports posted per intake channel (and one replay, one invalid body)
COUNTIES = {"652701": "博乐市", "652702": "阿拉山口市", "652722": "精河县", "652723": "温泉县"}
ROSTER_HEADER = ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态", "劳动能力",
                 "上年人均纯收入", "家庭人口数"]
FEED_HEADERS = {  # in the order the feeds should be run
    "registration-change": ["姓名", "身份证号码", "变动类型", "变动日期", "备注"],
    "hospitalization": ["姓名", "身份证号码", "疾病名称", "入院日期", "住院天数", "医疗总费用", "个人自付金额",
                        "结算日期"],
    "disaster-loss": ["户主姓名", "户主身份证号码", "行政区划代码", "灾害类型", "灾害发生日期", "死亡人数", "受伤人数",
                      "房屋损毁", "直接经济损失"],
    "dropout": ["学生姓名", "学生身份证号码", "学校名称", "学段", "年级", "辍学日期"],
    "vehicle-purchase": ["姓名", "身份证号码", "车辆类型", "品牌型号", "购买日期", "上牌日期", "购车价格"],
}
_FILES = {  # feed -> (department, file name, encoding)
    "registration-change": ("public-security", "registration-change.csv", "gb18030"),
    "hospitalization": ("medical-security", "hospitalization.csv", "gbk"),
    "disaster-loss": ("emergency", "disaster-loss.csv", "utf-8-sig"),
    "dropout": ("education", "dropout.xlsx", None),
    "vehicle-purchase": ("public-security", "vehicle-purchase.csv", "utf-8"),
}
# Headers as the vehicle office's export writes them: stray spaces, full-width spaces, a unit suffix.
_VEHICLE_HEADER_AS_WRITTEN = ["姓名 ", "\u3000身份证号码", "车辆类型", " 品牌型号", "购买日期", "上牌日期\u3000",
                              "  购车价格（元）"]

_CHANGE = {"死亡": "DEATH", "迁出": "MOVE_OUT", "出生": "BIRTH", "嫁入": "MARRY_IN", "嫁出": "MARRY_OUT",
           "注销": "CANCELLED"}
_DISASTER = {"洪涝": "FLOOD", "干旱": "DROUGHT", "冰雹": "HAIL", "地震": "EARTHQUAKE", "地质灾害": "GEOLOGICAL",
             "火灾": "FIRE", "风灾": "WIND", "雪灾": "SNOW", "其他": "OTHER"}
_DAMAGE = {"无": "NONE", "一般损坏": "MINOR", "严重损坏": "SERIOUS", "倒塌": "COLLAPSED"}
_STAGE = {"小学": "PRIMARY", "初中": "JUNIOR", "高中": "SENIOR", "中职": "VOCATIONAL"}
_STATUS = {"未纳入": "NOT_INCLUDED", "监测中": "MONITORING", "风险消除": "RISK_ELIMINATED"}
_FOCUS = ("脱贫不稳定户", "边缘易致贫户", "突发严重困难户")

_HAN_SURNAMES = "王李张刘陈杨赵黄周吴马胡郭何高罗孙朱"
_HAN_GIVEN = {"M": "建国华明军伟强磊勇杰涛平刚海志文斌鹏辉", "F": "芳娟霞丽艳英秀兰玉红梅春燕萍琴慧静敏"}
_MONGOL = {"M": ["巴特尔", "那仁", "孟和", "额尔敦", "巴音", "苏和", "宝音", "朝鲁"],
           "F": ["其其格", "乌云", "斯琴", "敖登", "图雅", "萨仁", "娜仁", "格日勒"]}
_TURKIC = {"M": ["艾力", "买买提", "阿不都", "吐尔逊", "哈力克", "木拉提", "叶尔兰", "努尔兰", "艾尔肯"],
           "F": ["古丽", "阿依古丽", "热依拉", "阿依达娜", "迪丽娜尔", "帕提古丽", "玛依拉"]}
_DISEASES = ["脑梗死", "肺炎", "冠心病", "慢性阻塞性肺疾病", "股骨骨折", "2型糖尿病", "肺恶性肿瘤", "慢性肾衰竭",
             "胆囊炎", "高血压病", "胃恶性肿瘤", "阑尾炎"]
_GRADES = {"小学": (7, "一二三四五六", "{}年级"), "初中": (12, "七八九", "{}年级"), "高中": (15, "一二三", "高{}"),
           "中职": (15, "一二三", "{}年级")}  # stage -> (age in the first grade, grade numbers, label)
_SCHOOLS = {"小学": "小学", "初中": "中学", "高中": "高级中学", "中职": "职业技术学校"}
_VEHICLES = [("小型轿车", ["比亚迪 秦PLUS", "吉利 帝豪", "长安 CS35", "大众 捷达"], (60000, 160000)),
             ("轻型货车", ["五菱 荣光", "福田 祥菱"], (45000, 90000)),
             ("摩托车", ["豪爵 HJ125", "钱江 QJ150"], (6000, 15000)),
             ("三轮汽车", ["时风 7YP-1450"], (12000, 25000))]


@dataclass(frozen=True)
class ExpectedAlert:
    """What the generator seeded on purpose: rule/severity as in `rules.Rule` / `rules.Severity` values."""

    household_id: str
    rule: str
    severity: str


@dataclass(frozen=True)
class DemoFiles:
    roster: Path
    feeds: list[tuple[str, str, Path]]  # (department, feed, file) in the order they should be run: every feed
    expected_alerts: frozenset[ExpectedAlert]  # household alerts
    expected_regional: frozenset[str]  # village codes that must get a REGIONAL_DISASTER alert
    bad_rows: dict[str, int]  # feed -> rows seeded invalid; key "roster" for the roster's rejected rows
    rows: dict[str, int] = field(default_factory=dict)  # feed -> data rows in its file
    duplicates: dict[str, int] = field(default_factory=dict)  # feed -> rows repeating an earlier row exactly
    # the intake requests to post, in order, with the answers they must get
    intake: tuple[F.IntakeRequest, ...] = field(default=(), repr=False)
    # rows added on purpose to the generated files: what each must raise, or that it raises nothing
    designed: tuple[Designed, ...] = field(default=(), repr=False)


@dataclass
class _Person:
    name: str
    id: str
    male: bool
    relation: str
    birth: dt.date


@dataclass
class _Household:
    hid: str
    village: str
    category: str
    status: str
    labour: str
    income: int  # 上年人均纯收入
    members: list[_Person]

    @property
    def head(self) -> _Person:
        return self.members[0]

    @property
    def annual(self) -> Decimal:
        return Decimal(self.income) * len(self.members)


def _date_text(d: dt.date, style: int) -> str:
    return (d.isoformat(), f"{d.year}/{d.month}/{d.day}", f"{d:%Y%m%d}", f"{d.year}年{d.month}月{d.day}日")[style]


def _cny(amount: Decimal, grouped: bool) -> str:
    return f"{amount:,.2f}" if grouped else (f"{amount:.0f}" if amount == amount.to_integral() else f"{amount:.2f}")


def _future(d: dt.date, today: dt.date) -> dt.date:
    """A typo'd year far ahead, so the row stays in the future whatever clock the connector reads."""
    return dt.date(today.year + 70, d.month, min(d.day, 28))


def _bad_check(number: str) -> str:
    return number[:17] + next(c for c in "0123456789X" if c != number[17])


def _grade(stage: str, age: int) -> str:
    first, numbers, label = _GRADES[stage]
    return label.format(numbers[min(max(age - first, 0), len(numbers) - 1)])


class _Gen:
    """Builds the population, then one scenario helper per rule; every seeded event is checked by the rules."""

    def __init__(self, rng: random.Random, today: dt.date) -> None:
        self.rng, self.today, self.cfg = rng, today, R.RuleConfig()
        self.ids: set[str] = set()
        self.used: set[str] = set()  # households already given a scenario
        self.pool: list[_Household] = []
        self.good: dict[str, list[tuple[dt.date, list[Any]]]] = {f: [] for f in FEED_HEADERS}
        self.bad: dict[str, list[list[Any]]] = {f: [] for f in FEED_HEADERS}
        self.stays: list[tuple[dt.date, _Person, _Household, dict[str, Any], R.Severity | None]] = []
        self.disasters: list[tuple[dt.date, _Household]] = []
        self.disaster_villages: set[str] = set()
        self.expected: set[ExpectedAlert] = set()
        self.duplicate: list[Any] | None = None
        self.illness_village = ""
        self.event_ids = itertools.count(1)

    # --- people ------------------------------------------------------------------------------------------
    def new_id(self, county: str, birth: dt.date, male: bool) -> str:
        while True:
            first17 = f"{county}{birth:%Y%m%d}{self.rng.randrange(500) * 2 + male:03d}"  # odd sequence = male
            number = first17 + check_character(first17)
            if number not in self.ids:
                self.ids.add(number)
                return number

    def person(self, county: str, age: int, male: bool, relation: str, name: str) -> _Person:
        birth = self.today - dt.timedelta(days=age * 365 + age // 4 + self.rng.randrange(1, 364))
        return _Person(name, self.new_id(county, birth, male), male, relation, birth)

    def name(self, style: str, male: bool, family: str) -> str:
        sex = "M" if male else "F"
        if style == "han":
            return family + "".join(self.rng.choices(_HAN_GIVEN[sex], k=self.rng.choice((1, 2, 2))))
        return self.rng.choice(_MONGOL[sex]) if style == "mongol" else f"{self.rng.choice(_TURKIC[sex])}·{family}"

    def household(self, hid: str, village: str) -> _Household:
        rng, county = self.rng, village[:6]
        style = rng.choices(("han", "mongol", "turkic"), (70, 15, 15))[0]
        new_family: Callable[[], str] = ((lambda: rng.choice(_HAN_SURNAMES)) if style == "han"
                                         else (lambda: rng.choice(_TURKIC["M"])))
        family, head_age, head_male = new_family(), rng.randint(25, 70), rng.random() < 0.85
        head = self.person(county, head_age, head_male, "户主", self.name(style, head_male, family))
        kin = head.name.split("·")[0] if style == "turkic" else family  # children's family name / patronym
        members, size = [head], rng.choices((2, 3, 4, 5, 6), (2, 3, 4, 3, 1))[0]
        if rng.random() < 0.85 or size == 2:
            age = min(max(head_age + rng.randint(-5, 5), 20), 75)
            spouse = self.name(style, not head_male, new_family())
            members.append(self.person(county, age, not head_male, "配偶", spouse))
        while len(members) < size:
            options = ["child"] * 3
            if head_age <= 62 and sum(m.relation in ("父亲", "母亲") for m in members) < 2:
                options.append("parent")
            if head_age >= 48 and sum(m.relation in ("孙子", "孙女") for m in members) < 2:
                options.append("grandchild")
            kind, male, fam = rng.choice(options), rng.random() < 0.5, kin
            if kind == "child":
                age, relation = rng.randint(3, min(20, head_age - 20)), "子" if male else "女"
            elif kind == "parent":
                male = not any(m.relation == "父亲" for m in members)
                age, relation = rng.randint(max(60, head_age + 20), 85), "父亲" if male else "母亲"
                fam = family if male else new_family()
            else:
                age, relation = rng.randint(1, min(12, head_age - 42)), "孙子" if male else "孙女"
            members.append(self.person(county, age, male, relation, self.name(style, male, fam)))
        category = rng.choices(("一般农户", "脱贫户", *_FOCUS), (55, 25, 8, 8, 4))[0]
        labour = rng.choices(("有劳动能力", "弱劳动能力", "无劳动能力"), (75, 15, 10))[0]
        if category in _FOCUS:  # never "risk eliminated" without labour capacity
            status = "监测中" if rng.random() < 0.8 or labour == "无劳动能力" else "风险消除"
            income = rng.randint(6000, 12000)
        else:
            status = "风险消除" if rng.random() < 0.1 and labour != "无劳动能力" else "未纳入"
            income = rng.randint(8000, 20000) if category == "脱贫户" else rng.randint(10000, 30000)
        return _Household(hid, village, category, status, labour, income, members)

    def outsider(self, age: int) -> _Person:
        """A Bortala resident who is not in the roster."""
        male = self.rng.random() < 0.5
        name = self.name("han", male, self.rng.choice(_HAN_SURNAMES))
        return self.person(self.rng.choice(list(COUNTIES)), age, male, "", name)

    # --- scenario plumbing -------------------------------------------------------------------------------
    def day(self, lo: int = 10, hi: int = 530) -> dt.date:
        return self.today - dt.timedelta(days=self.rng.randint(lo, hi))

    def money(self, lo: Decimal | int, hi: Decimal | int) -> Decimal:
        return Decimal(self.rng.randint(int(Decimal(lo) * 100) + 1, int(Decimal(hi) * 100))) / 100

    def take(self, pred: Callable[[_Household, _Person], bool]) -> tuple[_Household, _Person]:
        """A person of a household no scenario has used yet (the household is then used)."""
        for h in self.pool:
            if h.hid not in self.used:
                for p in h.members:
                    if pred(h, p):
                        self.used.add(h.hid)
                        return h, p
        raise ValueError("population too small for the seeded scenarios; use more households")

    def event(self, **fields: Any) -> dict[str, Any]:
        """An event as the rules see it (decoded Avro field names and enum symbols)."""
        return {"event_id": f"demo-{next(self.event_ids)}", **fields}

    def ctx(self, h: _Household, p: _Person) -> tuple[R.PersonContext, R.HouseholdContext]:
        return (R.PersonContext(p.id, h.hid, p.birth, p.relation, h.village),
                R.HouseholdContext(h.hid, h.village, _STATUS[h.status], Decimal(h.income), len(h.members)))

    def judged(self, rule: HR.EventRule, feed: str, event: dict[str, Any], h: _Household,
               p: _Person) -> R.AlertDraft | None:
        """What `rule` raises for the event alone (no earlier facts), as the monitor's household stage calls it."""
        person, household = self.ctx(h, p)
        topic = next(f.topic for f in INTAKE_CHANNELS + EVENT_FEED_LIST if f.feed == feed)
        verdict = rule(event, R.Context(topic, person, household, (), (), self.today, self.cfg))
        if len(verdict.drafts) > 1:
            raise AssertionError(f"{feed}: one event, one draft")
        return verdict.drafts[0] if verdict.drafts else None

    def expect(self, draft: R.AlertDraft | None, designed: R.Severity | None) -> None:
        got = draft.severity if draft else None
        if got != designed:
            raise AssertionError(f"scenario designed for {designed} but the rules give {got}")
        if draft:
            self.expected.add(ExpectedAlert(draft.household_id, draft.rule.value, draft.severity.value))

    # --- one helper per rule -----------------------------------------------------------------------------
    def registration(self, p: _Person, change: str, d: dt.date, remark: str = "") -> dict[str, Any]:
        text = _date_text(d, self.rng.choice((0, 0, 1, 3)))
        self.good["registration-change"].append((d, [p.name, p.id, change, text, remark]))
        return self.event(change_type=_CHANGE[change], change_date=d, occurred_at=d)

    def deaths(self) -> None:
        for change, plan in (("死亡", ((HIGH, 8), (MEDIUM, 8))), ("注销", ((HIGH, 1), (MEDIUM, 1)))):
            for severity, count in plan:
                for _ in range(count):
                    d = self.day()
                    ok: Callable[[int], bool] = ((lambda age: 18 <= age <= 58) if severity is HIGH
                                                 else (lambda age: age >= 62))
                    h, p = self.take(lambda h, p: ok(R.age_at(p.birth, d)))
                    event = self.registration(p, change, d, "户籍注销" if change == "注销" else "")
                    self.expect(self.judged(HR.death_in_household, "registration-change", event, h, p), severity)
        for i in range(10):  # harmless changes
            d, change = self.day(), ("出生", "迁出", "嫁入", "嫁出")[i % 4]
            if change == "出生":  # a newborn, not (yet) in the roster
                h, parent = self.take(lambda h, p: p.relation == "户主" and p.male and R.age_at(p.birth, d) < 45
                                      and p.name[0] in _HAN_SURNAMES)
                male = self.rng.random() < 0.5
                name = self.name("han", male, parent.name[0])
                self.registration(_Person(name, self.new_id(h.village[:6], d, male), male, "子", d), change, d)
            else:
                h, p = self.take(lambda h, p: p.relation in ("子", "女", "配偶") and 18 <= R.age_at(p.birth, d) <= 35)
                self.expect(self.judged(HR.death_in_household, "registration-change", self.registration(p, change, d),
                                        h, p), None)

    def stay(self, h: _Household, p: _Person, d: dt.date, oop: Decimal, designed: R.Severity | None,
             disease: str | None = None) -> None:
        rng, days, disease = self.rng, self.rng.randint(3, 30), disease or self.rng.choice(_DISEASES)
        total = (oop / Decimal(rng.randint(30, 75)) * 100).quantize(Decimal("0.01"))
        settled = min(d + dt.timedelta(days=days + rng.randint(0, 5)), self.today)
        row = [p.name, p.id, disease, _date_text(d, len(self.stays) % 4), days, _cny(total, True),
               _cny(oop, rng.random() < 0.5), _date_text(settled, rng.choice((0, 1)))]
        self.good["hospitalization"].append((d, row))
        event = self.event(admission_date=d, out_of_pocket=oop, disease=disease, days=days)
        self.stays.append((d, p, h, event, designed))  # judged in file order by medical_alerts()

    def medical(self) -> None:
        def share(h: _Household, x: str) -> Decimal:
            return h.annual * Decimal(x)

        for _ in range(6):  # one stay reaches half the annual income
            h, p = self.take(lambda h, p: h.annual <= 60000)
            self.stay(h, p, self.day(40, 530), self.money(share(h, "0.55"), share(h, "0.95")), HIGH)
        for first_big in (True, False):  # two stays, each below half, together at least half
            h, p = self.take(lambda h, p: 30000 <= h.annual <= 60000)
            half, d = share(h, "0.5"), self.day(220, 530)
            first = (self.money(10000, half * Decimal("0.85")) if first_big
                     else self.money(half * Decimal("0.3"), min(Decimal(9500), half * Decimal("0.7"))))
            self.stay(h, p, d, first, MEDIUM if first >= 10000 else None)
            later = d + dt.timedelta(days=self.rng.randint(30, 180))
            # The later stay alone is a MEDIUM (over 10,000): judged before the first one it would raise that too
            # (an alert of its own, besides the HIGH one). The same person has both stays, so that they share a
            # partition and reach the monitor in file order (a member's stays on another partition may arrive first).
            self.stay(h, p, later,
                      self.money(half - first + 100, half * Decimal("0.95")), HIGH)
        for _ in range(8):  # a large stay, well below half the income
            h, p = self.take(lambda h, p: h.annual >= 30000)
            self.stay(h, p, self.day(40, 530), self.money(10000, min(share(h, "0.45"), Decimal(40000))), MEDIUM)
        # REGIONAL_ILLNESS: five households of one village in hospital for the same disease within ten days, each
        # stay small (no MEDICAL_EXPENSE); the village has no other scenario's stays
        village = max(sorted({h.village for h in self.pool}),
                      key=lambda v: sum(h.village == v and h.hid not in self.used for h in self.pool))
        start = self.day(60, 300)
        for i in range(5):
            h, p = self.take(lambda h, p: h.village == village and R.age_at(p.birth, start) >= 18)
            self.stay(h, p, start + dt.timedelta(days=2 * i), self.money(300, 1500), None, disease="布鲁氏菌病")
        self.illness_village = village
        for i in range(15):  # small out-of-pocket: below half the income even if counted twice
            h, p = self.take(lambda h, p: True)
            self.stay(h, p, self.day(40, 530), self.money(200, min(Decimal(4000), share(h, "0.2"))), None)
            if i == 0:
                self.duplicate = self.good["hospitalization"][-1][1]

    def disaster(self, h: _Household, d: dt.date, kind: str, damage: str, deaths: int, loss: Decimal,
                 designed: R.Severity) -> None:
        injuries = self.rng.choice((0, 0, 1, 2)) if damage in ("倒塌", "严重损坏") or deaths else 0
        when, amount = _date_text(d, self.rng.choice((0, 3))), _cny(loss, self.rng.random() < 0.5)
        self.good["disaster-loss"].append((d, [h.head.name, h.head.id, h.village, kind, when, deaths, injuries, damage,
                                               amount]))
        self.disasters.append((d, h))
        self.disaster_villages.add(h.village)
        event = self.event(direct_loss=loss, deaths=deaths, injuries=injuries, house_damage=_DAMAGE[damage],
                       disaster_type=_DISASTER[kind], disaster_date=d)
        self.expect(R.disaster_loss(event, self.ctx(h, h.head)[1], self.cfg), designed)

    def disaster_loss(self, v_regional: str, v_four: str) -> None:
        clusters = ((v_regional, "洪涝", ("严重损坏", "倒塌", "一般损坏", "一般损坏", "无", "一般损坏")),
                    (v_four, "冰雹", ("一般损坏", "严重损坏", "无", "一般损坏")))
        for village, kind, damages in clusters:  # 6 households (regional alert) and 4 (none), within 5 days
            start = self.day(60, 500)
            for i, damage in enumerate(damages):
                h, _ = self.take(lambda h, p: h.village == village and p.relation == "户主")
                d = start + dt.timedelta(days=5 if i == 0 else self.rng.randint(0, 5))
                severity = HIGH if damage in ("严重损坏", "倒塌") else MEDIUM
                self.disaster(h, d, kind, damage, 0, self.money(500, h.annual * Decimal("0.3")), severity)
        plan = ([("deaths", HIGH)] * 2 + [("倒塌", HIGH)] * 2 + [("严重损坏", HIGH)] * 2 + [("loss", HIGH)] * 2
                + [("一般损坏", MEDIUM)] * 3 + [("无", MEDIUM)] * 3)
        for variant, severity in plan:  # single households, each in a village of its own
            h, _ = self.take(lambda h, p: p.relation == "户主" and h.village not in self.disaster_villages)
            low, high = ("0.55", "1.1") if variant == "loss" else ("0.02", "0.4")
            loss = self.money(h.annual * Decimal(low), h.annual * Decimal(high))
            damage, kind = "一般损坏" if variant in ("deaths", "loss") else variant, self.rng.choice(list(_DISASTER))
            self.disaster(h, self.day(), kind, damage, int(variant == "deaths"), loss, severity)

    def dropout(self, p: _Person, stage: str, d: dt.date) -> dict[str, Any]:
        """A row of the dropout file, its date alternately an Excel date cell and text."""
        school = f"{COUNTIES[p.id[:6]]}第{'一二三四五'[self.rng.randrange(5)]}{_SCHOOLS[stage]}"
        grade = _grade(stage, R.age_at(p.birth, d))
        cell = d if self.rng.random() < 0.5 else d.isoformat()
        self.good["dropout"].append((d, [p.name, p.id, school, stage, grade, cell]))
        return self.event(stage=_STAGE[stage], grade=grade, school=school, dropout_date=d, occurred_at=d)

    def dropouts(self) -> None:
        for stage, count, designed in (("小学", 3, HIGH), ("初中", 3, HIGH), ("高中", 2, None), ("中职", 2, None)):
            lo, hi = _GRADES[stage][0], _GRADES[stage][0] + len(_GRADES[stage][1]) - 1
            for _ in range(count):
                d = self.day()
                h, p = self.take(lambda h, p: p.relation in ("子", "女", "孙子", "孙女")
                                 and lo <= R.age_at(p.birth, d) <= hi)
                self.expect(self.judged(HR.school_dropout, "dropout", self.dropout(p, stage, d), h, p), designed)

    def vehicle(self, p: _Person, d: dt.date, legacy: bool = False) -> dict[str, Any]:
        vtype, models, (lo, hi) = self.rng.choice(_VEHICLES)
        model, price = self.rng.choice(models), Decimal(self.rng.randrange(lo, hi, 100))
        registered = min(d + dt.timedelta(days=self.rng.randint(0, 20)), self.today)
        number = p.id[:6] + p.id[8:17] if legacy else p.id  # the 15-digit legacy form
        row = [p.name, number, vtype, model, _date_text(d, self.rng.choice((0, 1))), _date_text(registered, 0),
               _cny(price, True) if self.rng.random() < 0.8 else ""]
        self.good["vehicle-purchase"].append((d, row))
        return self.event(vehicle_type=vtype, model=model, purchase_date=d, price=price)

    def vehicles(self) -> None:
        for i in range(15):  # 5 by members of households 监测中 (the first with a legacy ID), 10 by others
            d, monitored = self.day(), i < 5
            h, p = self.take(lambda h, p: (h.status == "监测中") == monitored and R.age_at(p.birth, d) >= 20
                             and (p.birth.year < 2000 or i > 0))
            self.expect(self.judged(HR.asset_purchase, "vehicle-purchase", self.vehicle(p, d, legacy=i == 0), h, p),
                        LOW if monitored else None)

    def outsiders(self) -> None:
        """Events about people who are not in the roster: no alert."""
        adult, older, child = self.outsider(45), self.outsider(52), self.outsider(10)
        self.registration(adult, "死亡", self.day())
        d = self.day(40, 530)
        self.good["hospitalization"].append((d, [older.name, older.id, "脑梗死", d.isoformat(), 14, "52,300.00",
                                                 "26150", (d + dt.timedelta(days=16)).isoformat()]))
        village = next(h.village for h in self.pool if h.village not in self.disaster_villages)
        self.disaster_villages.add(village)
        d = self.day()
        self.good["disaster-loss"].append((d, [older.name, older.id, village, "火灾", f"{d}", 0, 1, "倒塌", "62000"]))
        self.dropout(child, "小学", self.day())
        self.vehicle(self.outsider(33), self.day())
        self.vehicle(older, self.day())

    def bad_rows(self) -> None:
        """Each row is invalid for one clear reason; most would raise an alert if the connector let them through."""
        def pick() -> _Person:
            return self.take(lambda h, p: R.age_at(p.birth, self.today) >= 20)[1]

        d, far, p = self.day().isoformat(), _future(self.day(), self.today).isoformat(), pick()
        self.bad["registration-change"] += [
            [p.name, _bad_check(p.id), "死亡", d, ""],  # check character
            [(p := pick()).name, p.id, "失踪", d, ""],  # unknown 变动类型
            [(p := pick()).name, p.id, "死亡", far, ""],  # future date
        ]
        p = pick()
        self.bad["hospitalization"] += [
            [p.name, p.id, "肺炎", d, 5, "6200", "-30", d],  # negative amount
            [(p := pick()).name, p.id, "脑梗死", "上周三", 12, "38,200.00", "24500", d],  # unparseable date
            [(p := pick()).name, p.id, "冠心病", "", 9, "41,000.00", "26000", d],  # missing 入院日期
            [(p := pick()).name, _bad_check(p.id), "股骨骨折", d, 20, "45,800.00", "30000", d],  # check character
        ]
        a, b, c = (self.take(lambda h, p: p.relation == "户主" and h.village not in self.disaster_villages)[0]
                   for _ in range(3))
        self.bad["disaster-loss"] += [
            [a.head.name, a.head.id, a.village, "洪涝", d, 0, 0, "部分倒塌", "8000"],  # unknown 房屋损毁
            [b.head.name, b.head.id, b.village, "雪灾", d, 0, 0, "一般损坏", "-5000"],  # negative amount
            [c.head.name, _bad_check(c.head.id), c.village, "冰雹", d, 1, 0, "倒塌", "30000"],  # check character
        ]
        pa, pb, pc = (self.take(lambda h, p: p.relation in ("子", "女") and 8 <= R.age_at(p.birth, self.today) <= 14)[1]
                      for _ in range(3))
        self.bad["dropout"] += [
            [pa.name, pa.id, "博乐市第二中学", "大学", "一年级", dt.date.fromisoformat(d)],  # unknown 学段
            [pb.name, pb.id, "精河县第一小学", "小学", "四年级", far],  # future date
            [pc.name, None, "温泉县第一中学", "初中", "八年级", d],  # missing ID number
        ]
        p = pick()
        self.bad["vehicle-purchase"] += [
            [p.name, p.id, "小型轿车", "吉利 帝豪", "去年秋天", d, "78,000.00"],  # unparseable date
            [(p := pick()).name, _bad_check(p.id), "轻型货车", "五菱 荣光", d, d, "52000"],  # check character
            [(p := pick()).name, p.id, "摩托车", "豪爵 HJ125", d, d, "-8500"],  # negative price
        ]

    # --- results -----------------------------------------------------------------------------------------
    def medical_alerts(self) -> None:
        """Hospitalisations in file order, each judged with the household's earlier stays, as the monitor does."""
        history: dict[str, list[R.MedicalStay]] = {}
        for _, p, h, event, designed in sorted(self.stays, key=lambda s: s[0]):
            drafts, history[h.hid] = R.medical_expense(event, *self.ctx(h, p), history.get(h.hid, []), self.cfg)
            if len(drafts) > 1:
                raise AssertionError("stays in date order never re-judge a later stay")
            self.expect(drafts[0] if drafts else None, designed)

    def regional_alerts(self) -> set[str]:
        records: dict[str, list[R.VillageRecord]] = {}
        fired: dict[str, set[int]] = {}
        for i, (d, h) in enumerate(sorted(self.disasters, key=lambda x: x[0])):
            records.setdefault(h.village, []).append(R.VillageRecord(h.hid, f"d{i}", d))
            for draft in R.regional_disaster(h.village, records[h.village], fired.get(h.village, set()), self.cfg):
                fired.setdefault(h.village, set()).add(draft.period)
        return set(fired)

    def rows(self, feed: str) -> list[list[Any]]:
        """The file's rows: valid ones by date, the duplicate beside its twin, bad ones anywhere."""
        rows = [row for _, row in sorted(self.good[feed], key=lambda x: x[0])]
        if feed == "hospitalization" and self.duplicate is not None:
            rows.insert(rows.index(self.duplicate) + 1, list(self.duplicate))
        for row in self.bad[feed]:
            rows.insert(self.rng.randrange(len(rows) + 1), row)
        return rows


def _write_csv(path: Path, header: list[str], rows: list[list[Any]], encoding: str) -> None:
    F.write_csv(path, header, rows, encoding)


def _write_xlsx(path: Path, header: list[str], rows: list[list[Any]], stamp: dt.datetime) -> None:
    F.write_xlsx(path, header, rows, stamp, "辍学学生名单")


def _roster_households(gen: _Gen) -> list[F.Household]:
    """The scenario households as services/demo/feeds.py sees them (the three carrying bad roster rows left out)."""
    return [F.Household(h.hid, h.village, tuple(F.Member(p.name, p.id, p.male, p.relation, p.birth)
                                                 for p in h.members)) for h in gen.pool]


def _other_feeds(out_dir: Path, roster: list[F.Household], households: int, seed: int,
                 today: dt.date, designed: list[Designed]) -> list[F.FeedFile]:
    """A file for every catalogue feed the headline scenarios do not cover, derived from its declaration
    (services/demo/feeds.py): facts about members of the roster's households, a few bad rows each. Encodings
    cycle GB18030 / UTF-8 with BOM / UTF-8, one file is XLSX, some headers carry stray spaces. Each feed draws from
    a random generator of its own, so adding a feed to the catalogue changes no other file."""
    specs = [spec for (_, feed), spec in EVENT_FEEDS.items() if feed not in _FILES]
    names = [spec.feed for spec in specs] + list(_FILES)
    out = []
    for j, spec in enumerate(specs):
        xlsx = j == len(specs) // 2
        encoding = None if xlsx else ("gb18030", "utf-8-sig", "utf-8")[j % 3]
        stem = spec.feed if names.count(spec.feed) == 1 else f"{spec.department}-{spec.feed}"
        count = min(200, max(20, households // 25 + (j * 37) % 61 - 30))
        extra = [d.cells for d in designed if (d.department, d.feed) == (spec.department, spec.feed)]
        out.append(F.write_feed_file(spec, roster, out_dir / f"{stem}.{'xlsx' if xlsx else 'csv'}", count=count,
                                     seed=f"{seed}:{spec.department}:{spec.feed}", today=today, encoding=encoding,
                                     messy_headers=j % 5 == 3, extra=extra))
    return out


def generate(out_dir: Path, *, households: int = 3000, seed: int = 2024, today: dt.date) -> DemoFiles:
    """Write roster.csv and the five feed files into `out_dir`; return what was seeded."""
    if households < 200:
        raise ValueError("need at least 200 households for the seeded scenarios")
    rng = random.Random(seed)
    gen = _Gen(rng, today)
    villages = [f"{county}{100 + t:03d}{200 + v:03d}" for county in COUNTIES
                for t in range(1, rng.randint(3, 5) + 1) for v in range(1, rng.randint(4, 6) + 1)]
    v_regional, v_four = rng.sample(villages, 2)
    weights = [rng.uniform(0.5, 2.0) for _ in villages]
    assigned = [v_regional] * 10 + [v_four] * 6 + rng.choices(villages, weights, k=households - 16)
    seq: Counter[str] = Counter()
    all_households = []
    for village in assigned:
        seq[village] += 1
        all_households.append(gen.household(f"H{village}-{seq[village]:04d}", village))
    gen.pool = rng.sample(all_households, len(all_households))
    # Three extra households carrying the roster's invalid rows; no scenario touches them.
    extras = []
    for village in rng.sample([v for v in villages if v not in (v_regional, v_four)], 3):
        seq[village] += 1
        extras.append(gen.household(f"H{village}-{seq[village]:04d}", village))
    gen.disaster_villages |= {v_regional, v_four}
    gen.disaster_loss(v_regional, v_four)  # first: the two villages' households must still be free
    gen.deaths()
    gen.medical()
    gen.dropouts()
    gen.vehicles()
    gen.outsiders()
    gen.bad_rows()
    gen.medical_alerts()
    regional = gen.regional_alerts()
    if regional != {v_regional}:
        raise AssertionError(f"regional scenario gives {sorted(regional)}")

    out_dir.mkdir(parents=True, exist_ok=True)
    roster_rows = []
    for h in sorted(all_households + extras, key=lambda h: h.hid):
        for p in h.members:
            roster_rows.append([h.hid, p.name, p.id, "男" if p.male else "女", p.relation, h.village, h.category,
                                h.status, h.labour, h.income, len(h.members)])
    # One invalid row in each extra household: bad check character / unknown 性别 / 8-digit 行政区划代码.
    spoilers: tuple[Callable[[str], str], ...] = (_bad_check, lambda _: "未知", lambda code: code[:8])
    for h, col, spoil in zip(extras, (2, 3, 5), spoilers):
        row = next(r for r in roster_rows if r[2] == h.members[-1].id)
        row[col] = spoil(str(row[col]))  # columns 2, 3, 5 are text
    roster = out_dir / "roster.csv"
    _write_csv(roster, ROSTER_HEADER, roster_rows, "utf-8-sig")

    feeds, counts = [], {}
    for feed, (department, name, encoding) in _FILES.items():
        path, rows = out_dir / name, gen.rows(feed)
        if encoding is None:
            _write_xlsx(path, FEED_HEADERS[feed], rows, dt.datetime.combine(today, dt.time(8)))
        else:
            header = _VEHICLE_HEADER_AS_WRITTEN if feed == "vehicle-purchase" else FEED_HEADERS[feed]
            _write_csv(path, header, rows, encoding)
        feeds.append((department, feed, path))
        counts[feed] = len(rows)
    bad_rows = {feed: len(rows) for feed, rows in gen.bad.items()}
    bad_rows["roster"] = len(extras)
    duplicates = {feed: int(feed == "hospitalization" and gen.duplicate is not None) for feed in _FILES}
    members = _roster_households(gen)
    designed = designed_rows(members, today)
    for made in _other_feeds(out_dir, members, households, seed, today, designed):
        feeds.append((made.department, made.feed, made.path))
        counts[made.feed], bad_rows[made.feed], duplicates[made.feed] = made.rows, made.bad_rows, 0
    intake = F.intake_requests(MODELS, members, per_channel=INTAKE_PER_CHANNEL, rng=random.Random(f"{seed}:intake"),
                               today=today)
    return DemoFiles(roster, feeds, frozenset(gen.expected), frozenset(regional), bad_rows, counts, duplicates,
                     tuple(intake), tuple(designed))


def _data_rows(path: Path) -> int:
    if path.suffix == ".xlsx":
        sheet = load_workbook(path, read_only=True).active
        assert sheet is not None, "the generator's workbook has one sheet, and it is the active one"
        return sheet.max_row - 1
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("gb18030")
    return sum(1 for _ in csv.reader(io.StringIO(text))) - 1


def write_manifest(files: DemoFiles, path: Path) -> None:
    """A JSON description of the generated files and what the pipeline must find in them, for humans."""
    roster = list(csv.DictReader(io.StringIO(files.roster.read_text("utf-8-sig"))))
    by_rule = Counter(f"{a.rule}/{a.severity}" for a in files.expected_alerts)
    manifest = {
        "roster": {"file": files.roster.name, "persons": len(roster), "households": len({r["户编号"] for r in roster}),
                   "bad_rows": files.bad_rows.get("roster", 0)},
        "feeds": [{"department": dep, "feed": feed, "title": event_feed(dep, feed).title, "file": p.name,
                   "rows": _data_rows(p), "bad_rows": files.bad_rows.get(feed, 0),
                   "duplicates": files.duplicates.get(feed, 0)} for dep, feed, p in files.feeds],
        "intake": [{"channel": channel.feed, "title": channel.title,
                    "posted": sum(r.channel == channel.feed for r in files.intake),
                    "accepted": sum(r.channel == channel.feed and r.expect == 202 for r in files.intake),
                    "replays": sum(r.channel == channel.feed and r.replay for r in files.intake),
                    "refused": sum(r.channel == channel.feed and r.expect != 202 for r in files.intake)}
                   for channel in INTAKE_CHANNELS],
        "expected_alerts": {"total": len(files.expected_alerts), "by_rule_and_severity": dict(sorted(by_rule.items())),
                            "alerts": [vars(a) for a in sorted(files.expected_alerts,
                                                               key=lambda a: (a.rule, a.household_id, a.severity))]},
        "expected_regional": sorted(files.expected_regional),
    }
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
