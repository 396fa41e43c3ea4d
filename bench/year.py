"""A prefecture's year of department files: how many rows each feed of the catalogue sends in a year, and in how
many files (its cadence), for a population of P persons in H households and V villages.

Pure arithmetic, no I/O: `bench/sweep.py` writes the files, docs/scaling.md reads the shares. The rates are what
a rural prefecture's departments plausibly export to a monitoring system (one row per event or per periodic
record), stated per unit so that the volume scales with the population:

    unit        per      rows a year per unit, and files a year
    person      every registered person (the roster)
    adult       persons aged 18 or more (about 70 % of the roster)
    student     persons aged 6 to 22 (about 20 %)
    household   every household (about 3.85 persons each)
    village     every village

A feed's rows in one file are about distinct subjects (the demo generator draws each subject once per file), so
a record kept monthly for the same people is twelve files of the same size: the monthly exports a department
hands over.

What the rows say (`PROFILES`, read by bench/yearfiles.py): a department's real export is mostly unremarkable
(employed workers, paid insurance, stays below the thresholds, houses graded A or B), so each feed states its
benign values and the share of risky rows, with the risky values. A benign row takes one of the benign values
per named field (the others as the feed's example, its amounts times one factor of 0.8-1.25 per row); a risky
row is the demo generator's variant (every enumeration value in turn, amounts times 0.5-1.5) with one of the
risky values per named field. A feed without a profile, or with share 0, has no value that makes a row risky on
its own (an asset bought raises an alert only in a monitored household, which the roster decides). The
resulting alerts per event are measured by the sweep, not assumed: a rule may still fire on benign rows
together (five stays for one disease in one village within 14 days, HIGH alerts clustering in a village).
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Volume", "VOLUMES", "Plan", "plan_year", "UNITS", "Profile", "PROFILES"]

UNITS = ("person", "adult", "student", "household", "village")


@dataclass(frozen=True)
class Volume:
    unit: str  # one of UNITS
    rate: float  # rows a year per unit
    files: int  # files a year (1 annual, 2 per term, 4 quarterly, 12 monthly)
    why: str  # what the rows are

    def __post_init__(self) -> None:
        if self.unit not in UNITS or self.rate <= 0 or self.files < 1:
            raise ValueError(f"bad volume {self}")


VOLUMES: dict[tuple[str, str], Volume] = {
    ("public-security", "registration-change"): Volume("person", 0.03, 12, "births, deaths, moves, marriages"),
    ("public-security", "vehicle-purchase"): Volume("adult", 0.015, 12, "vehicles bought"),
    ("medical-security", "hospitalization"): Volume("person", 0.15, 12, "inpatient stays settled"),
    ("emergency", "disaster-loss"): Volume("household", 0.03, 12, "households with disaster losses"),
    ("education", "dropout"): Volume("student", 0.003, 2, "pupils leaving school, per term"),
    ("cac", "public-opinion"): Volume("village", 2, 12, "online clues about a village"),
    ("education", "student-roll"): Volume("student", 2, 2, "every pupil's enrolment, each term"),
    ("education", "student-aid"): Volume("student", 0.6, 2, "aid granted, each term (30 % of pupils)"),
    ("public-security", "identity-check"): Volume("person", 1, 1, "the yearly comparison of every resident"),
    ("public-security", "traffic-accident"): Volume("person", 0.003, 12, "persons in road accidents"),
    ("civil-affairs", "assistance"): Volume("person", 0.96, 12, "monthly assistance paid (8 % of residents)"),
    ("hrss", "employment"): Volume("adult", 6, 12, "monthly work status of migrant workers (half of adults)"),
    ("housing", "house-safety"): Volume("household", 1, 1, "the yearly house safety check"),
    ("natural-resources", "commercial-housing"): Volume("adult", 0.005, 12, "commercial flats bought"),
    ("water", "drinking-water"): Volume("village", 12, 12, "monthly water test per village"),
    ("agriculture", "farm-disaster"): Volume("village", 4, 4, "seasonal crop losses per village"),
    ("agriculture", "collective-income"): Volume("village", 1, 1, "the collective's yearly distributable income"),
    ("health", "chronic-disease"): Volume("person", 0.8, 4, "quarterly follow-ups (20 % of residents)"),
    ("health", "serious-illness"): Volume("person", 0.005, 12, "special treatment of serious illness"),
    ("medical-security", "insurance"): Volume("person", 1, 1, "the yearly enrolment of every resident"),
    ("pboc", "deposit-loan"): Volume("adult", 1.2, 4, "quarterly loan records (30 % of adults)"),
    ("disabled-federation", "disability-certificate"): Volume("person", 0.06, 4, "certificates issued or reviewed"),
    ("market-regulation", "business-registration"): Volume("adult", 0.01, 12, "businesses registered"),
    ("statistics", "household-income"): Volume("household", 1, 1, "the yearly income survey of every household"),
    ("farm-machinery", "machinery-purchase"): Volume("household", 0.01, 12, "machinery bought with a subsidy"),
}


@dataclass(frozen=True)
class Profile:
    """What one feed's rows say: `risky` of them (a share) carry the `risky_values`, the rest the
    `benign_values` (field -> the values drawn from; "" leaves the cell empty)."""

    risky: float
    benign_values: dict[str, tuple[str, ...]]
    risky_values: dict[str, tuple[str, ...]]
    why: str

    def __post_init__(self) -> None:
        if not 0 <= self.risky <= 1:
            raise ValueError(f"bad risky share {self.risky}")


_DIAGNOSES = tuple("肺炎 高血压 脑梗死 冠心病 慢性阻塞性肺疾病 糖尿病 骨折 阑尾炎 胆囊结石 白内障 "
                   "腰椎间盘突出 胃炎 肾结石 分娩 支气管炎 心力衰竭 肠梗阻 子宫肌瘤 痛风 带状疱疹 "
                   "颈椎病 甲状腺结节 贫血 泌尿系感染 关节炎 哮喘 肝硬化 脑出血 疝气 前列腺增生".split())

PROFILES: dict[tuple[str, str], Profile] = {
    ("public-security", "registration-change"): Profile(
        0.20, {"change_type": ("迁出", "出生", "嫁入", "嫁出")}, {"change_type": ("死亡", "注销")},
        "deaths are about a fifth of a county's registration changes"),
    ("medical-security", "hospitalization"): Profile(
        0.03, {"disease": _DIAGNOSES},
        {"total_cost": ("40,000.00", "56,000.00", "82,000.00"), "out_of_pocket": ("12000", "16800", "25000")},
        "3 % of stays leave 10,000 CNY or more to pay (benign: 2,900-4,500 of 9,600-15,000)"),
    ("emergency", "disaster-loss"): Profile(
        0.05, {"house_damage": ("无", "一般损坏")}, {"house_damage": ("严重损坏", "倒塌")},
        "every row raises at least MEDIUM (the rule); 5 % with the house seriously damaged or collapsed"),
    ("education", "dropout"): Profile(
        0.20, {"stage": ("高中", "中职")}, {"stage": ("小学", "初中")},
        "a fifth of the dropouts in compulsory schooling"),
    ("cac", "public-opinion"): Profile(
        0.30, {"person_id_number": ("",)}, {},
        "three clues in ten name a person (benign: about the village only)"),
    ("education", "student-roll"): Profile(
        0.005, {"status": ("在读", "毕业", "转出")}, {"status": ("辍学",), "stage": ("小学", "初中")},
        "0.5 % of the roll's rows a dropout in compulsory schooling"),
    ("public-security", "traffic-accident"): Profile(
        0.30, {"casualty": ("轻伤",)}, {"casualty": ("死亡", "重伤")}, "three casualties in ten killed or badly hurt"),
    ("civil-affairs", "assistance"): Profile(
        0.03, {"change_type": ("发放",),
               "assistance_type": ("低保", "特困供养", "困难残疾人生活补贴", "重度残疾人护理补贴")},
        {"assistance_type": ("临时救助",), "change_type": ("发放",)},
        "the monthly payments; 3 % temporary assistance"),
    ("hrss", "employment"): Profile(
        0.02, {"end_date": ("",)}, {}, "2 % of the monthly rows end a job (benign: still at work)"),
    ("housing", "house-safety"): Profile(
        0.03, {"safety_grade": ("A", "B"), "damage": ("无", "一般损坏"), "cause": ("鉴定", "改造竣工", "其他")},
        {"safety_grade": ("C", "D"), "damage": ("严重损坏", "倒塌")}, "3 % of houses graded C or D"),
    ("water", "drinking-water"): Profile(
        0.10, {}, {"resolved_date": ("",)}, "one test in ten finds a problem not yet solved"),
    ("agriculture", "farm-disaster"): Profile(
        0.30, {"head_id_number": ("",)}, {}, "three rows in ten name a household (benign: the village's losses)"),
    ("agriculture", "collective-income"): Profile(
        0.05, {}, {"distributable_income": ("0", "150,000.00")}, "one collective in twenty lost a third or more"),
    ("health", "chronic-disease"): Profile(
        0.03, {"disease": ("高血压", "糖尿病"), "management_status": ("在管", "治愈")},
        {"disease": ("结核病", "严重精神障碍"), "management_status": ("在管", "失访", "死亡")},
        "3 % tuberculosis or severe mental disorder, lost to follow-up, or died"),
    ("health", "serious-illness"): Profile(
        0.30, {"treatment_status": ("已救治",)}, {"treatment_status": ("救治中", "放弃救治")},
        "three in ten still treated or given up"),
    ("medical-security", "insurance"): Profile(
        0.02, {"enrolment_status": ("参保",)},
        {"insurance_type": ("基本医疗保险",), "enrolment_status": ("未参保", "停保")},
        "2 % of residents not (or no longer) insured"),
    ("disabled-federation", "disability-certificate"): Profile(
        0.20, {"disability_grade": ("三级", "四级"), "certificate_status": ("有效",)},
        {"disability_grade": ("一级", "二级"), "certificate_status": ("有效",)},
        "a fifth of certificates grade 1 or 2"),
    ("statistics", "household-income"): Profile(
        0.03, {}, {}, "3 % of households with the demo's spread of incomes (many below the line); the rest at the "
        "example's per-capita income times 0.8-1.25 (9,200-14,400 CNY, above the 9,000 line)"),
}


@dataclass(frozen=True)
class Plan:
    """One feed's year: `files` files of `per_file` rows each."""

    department: str
    feed: str
    files: int
    per_file: int

    @property
    def rows(self) -> int:
        return self.files * self.per_file


def plan_year(units: dict[str, int], scale: float = 1.0) -> list[Plan]:
    """Every feed's files and rows for a population counted in `units` (a count per unit of UNITS), its volume
    multiplied by `scale`; at least one row per file. A file never holds more rows than there are units (each
    subject once per file)."""
    missing = [u for u in UNITS if units.get(u, 0) < 1]
    if missing or scale <= 0:
        raise ValueError(f"need at least one of every unit and a positive scale (missing: {', '.join(missing)})")
    plans = []
    for (department, feed), v in VOLUMES.items():
        per_file = max(1, min(units[v.unit], round(units[v.unit] * v.rate * scale / v.files)))
        plans.append(Plan(department, feed, v.files, per_file))
    return plans
