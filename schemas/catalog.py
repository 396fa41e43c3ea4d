"""The topic catalogue: every feed and every topic povwatch uses, as data (docs/architecture.md, "Topics").

This is the one list. Each entry is a feed's wire half (department, feed, topic, Avro record, link, rules); its
column half is the `FeedSpec` of its department module (connectors/departments/), found by connectors/catalog.py,
which refuses to load unless every entry has exactly one. Everything else is derived from here: the topics
(`project_topics()`), the monitor's subscriptions and routing (`monitored_feeds()`, `Feed.link`), its rule
dispatch (`Feed.rules`), the command line's feed list and templates, the demo's files. Adding a feed starts here.

    EVENT_FEEDS       department feeds that publish events on events.<dept>.<feed>
    ROSTER            the bureau's roster (Person records on registry.persons; its dead letters on dlq.bureau)
    INTAKE_CHANNELS   the intake API's channels (IntakeReport records on events.intake.<channel>): no file
                      connector, consumed by the monitor like the department feeds
    project_topics()  every topic, with its compaction
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from schemas.alerts import Rule
from schemas.topics import (
    ALERTS_HOUSEHOLD,
    ALERTS_REGIONAL,
    AUDIT_TOPIC,
    CASEFEED_DLQ,
    MONITOR_DLQ,
    PROFILES_HOUSEHOLD,
    REGISTRY_HOUSEHOLD_STATUS,
    REGISTRY_HOUSEHOLDS,
    REGISTRY_PERSONS,
    TopicSpec,
    comparison_request_topic,
    comparison_result_topic,
    dlq_topic,
    event_topic,
)

__all__ = [
    "Feed",
    "Link",
    "REGISTRATION_CHANGE",
    "VEHICLE_PURCHASE",
    "HOSPITALIZATION",
    "DISASTER_LOSS",
    "DROPOUT",
    "EVENT_FEEDS",
    "ROSTER",
    "INTAKE",
    "INTAKE_CHANNELS",
    "INTAKE_SCHEMA",
    "event_topics",
    "intake_topics",
    "event_feed",
    "monitored_feeds",
    "feed_of_topic",
    "departments",
    "project_topics",
    "feeds_of_rule",
    "ComparisonDepartment",
    "COMPARISON_DEPARTMENTS",
    "comparison_department",
    "comparison_request_topics",
    "comparison_result_topics",
]


Link = Literal["person", "household", "village"]


@dataclass(frozen=True)
class Feed:
    """A feed as the wire and the monitor see it: who sends it, its name, the topic, the Avro record, how its
    rows link to the roster, and which rules judge its events.

    link      person: the row's 身份证号码 (message key = its person_key); household: the 户主身份证号码 (key = the
              head's person_key); village: the 行政区划代码, and a person or household when the optional ID column
              is filled (key = that person_key, else the village code; the record's person_key is then null)
    rules     the `schemas.alerts.Rule` values that judge this feed's events (household and regional rules)
    facts     whether the monitor keeps each event as a fact (hospitalisation keeps its own medical history)
    domain    where the household's profile shows it (收入, 就业, 健康, 教育, 住房, 饮水, 资产, 救助, 灾害, 报告, 户籍)
    yearly    the rows give a 年度 only (dated 1 January): kept and judged year by year, and the history horizon
              counts them by the year's last day
    """

    department: str  # slug of docs/domain.md, e.g. medical-security
    feed: str  # e.g. hospitalization
    schema: str  # full name of the Avro record, schemas/avro/<schema>.avsc
    topic: str
    link: Link = "person"
    title: str = ""  # the feed's Chinese name, as docs/feeds.md shows it
    rules: tuple[str, ...] = ()
    facts: bool = True
    domain: str = ""
    yearly: bool = False

    @property
    def dlq(self) -> str:
        """Where this feed's rejected rows go."""
        return dlq_topic(self.department)


def _event_feed(department: str, feed: str, schema: str, title: str, link: Link = "person",
                rules: tuple[str, ...] = (), facts: bool = True, *, domain: str, yearly: bool = False) -> Feed:
    return Feed(department, feed, f"povwatch.events.{schema}", event_topic(department, feed), link, title, rules,
                facts, domain, yearly)


# The five headline feeds (docs/feeds.md), each judged by its rules (docs/rules.md).
REGISTRATION_CHANGE = _event_feed("public-security", "registration-change", "RegistrationChange", "户籍变动",
                                  rules=(Rule.DEATH_IN_HOUSEHOLD,), domain="户籍")
VEHICLE_PURCHASE = _event_feed("public-security", "vehicle-purchase", "VehiclePurchase", "车辆购置",
                               rules=(Rule.ASSET_PURCHASE,), domain="资产")
HOSPITALIZATION = _event_feed("medical-security", "hospitalization", "Hospitalization", "住院",
                              rules=(Rule.MEDICAL_EXPENSE, Rule.REGIONAL_ILLNESS), facts=False, domain="健康")
DISASTER_LOSS = _event_feed("emergency", "disaster-loss", "DisasterLoss", "自然灾害损失", link="household",
                            rules=(Rule.DISASTER_LOSS, Rule.REGIONAL_DISASTER), domain="灾害")
DROPOUT = _event_feed("education", "dropout", "Dropout", "辍学", rules=(Rule.SCHOOL_DROPOUT,), domain="教育")

EVENT_FEEDS: tuple[Feed, ...] = (
    REGISTRATION_CHANGE,
    VEHICLE_PURCHASE,
    HOSPITALIZATION,
    DISASTER_LOSS,
    DROPOUT,
    # Every department's feeds (docs/feeds.md, "Every department's feeds") and the rules of docs/rules.md that
    # judge them.
    _event_feed("cac", "public-opinion", "PublicOpinion", "网络舆情线索", link="village",
                rules=(Rule.REPORTED_RISK,), domain="报告"),
    _event_feed("education", "student-roll", "StudentRoll", "在校生信息", rules=(Rule.SCHOOL_DROPOUT,),
                domain="教育"),
    _event_feed("education", "student-aid", "StudentAid", "学生资助", domain="教育"),
    _event_feed("public-security", "identity-check", "IdentityCheck", "户籍比对", domain="户籍"),
    _event_feed("public-security", "traffic-accident", "TrafficAccident", "交通事故",
                rules=(Rule.DEATH_IN_HOUSEHOLD, Rule.ACCIDENT_INJURY), domain="健康"),
    _event_feed("civil-affairs", "assistance", "SocialAssistance", "社会救助", rules=(Rule.SAFETY_NET,),
                domain="救助"),
    _event_feed("hrss", "employment", "Employment", "务工就业", rules=(Rule.JOB_LOSS, Rule.REGIONAL_RETURNS),
                domain="就业"),
    _event_feed("housing", "house-safety", "HouseSafety", "住房安全", link="household",
                rules=(Rule.HOUSING_UNSAFE,), domain="住房"),
    _event_feed("natural-resources", "commercial-housing", "CommercialHousing", "商品住房",
                rules=(Rule.ASSET_PURCHASE,), domain="资产"),
    _event_feed("water", "drinking-water", "DrinkingWater", "安全饮水", link="village",
                rules=(Rule.WATER_UNSAFE, Rule.REGIONAL_WATER), domain="饮水"),
    _event_feed("agriculture", "farm-disaster", "FarmDisaster", "农业灾情", link="village",
                rules=(Rule.DISASTER_LOSS, Rule.REGIONAL_DISASTER), domain="灾害"),
    _event_feed("agriculture", "collective-income", "CollectiveIncome", "村集体可分配收益", link="village",
                rules=(Rule.COLLECTIVE_INCOME_DROP,), domain="收入", yearly=True),
    _event_feed("health", "chronic-disease", "ChronicDisease", "重点慢病",
                rules=(Rule.DEATH_IN_HOUSEHOLD, Rule.CHRONIC_DISEASE), domain="健康"),
    _event_feed("health", "serious-illness", "SeriousIllness", "大病专项救治", rules=(Rule.SERIOUS_ILLNESS,),
                domain="健康"),
    _event_feed("medical-security", "insurance", "Insurance", "参保信息", rules=(Rule.INSURANCE_GAP,),
                domain="救助", yearly=True),
    _event_feed("pboc", "deposit-loan", "DepositLoan", "存贷款", rules=(Rule.ASSET_PURCHASE, Rule.LOAN_OVERDUE),
                domain="资产"),
    _event_feed("disabled-federation", "disability-certificate", "DisabilityCertificate", "残疾人证",
                rules=(Rule.SEVERE_DISABILITY,), domain="健康"),
    _event_feed("market-regulation", "business-registration", "BusinessRegistration", "市场主体登记",
                rules=(Rule.ASSET_PURCHASE,), domain="资产"),
    _event_feed("statistics", "household-income", "HouseholdIncome", "住户收入", link="household",
                rules=(Rule.INCOME_BELOW_LINE, Rule.INCOME_DROP), domain="收入", yearly=True),
    _event_feed("farm-machinery", "machinery-purchase", "MachineryPurchase", "农机购置",
                rules=(Rule.ASSET_PURCHASE,), domain="资产"),
)

ROSTER = Feed("bureau", "roster", "povwatch.registry.Person", REGISTRY_PERSONS, title="监测对象名单")

# The intake API (docs/feeds.md, "The intake channels"): JSON requests, one IntakeReport each, on
# events.intake.<channel>, linked to a household (its head's person_key, or the 户编号 alone). Invalid requests are
# answered 422, never dead-lettered, so "intake" has no dlq topic.
INTAKE = "intake"
INTAKE_SCHEMA = "povwatch.events.IntakeReport"
INTAKE_CHANNELS: tuple[Feed, ...] = tuple(
    Feed(INTAKE, channel, INTAKE_SCHEMA, event_topic(INTAKE, channel), "household", title, (Rule.REPORTED_RISK,),
         domain="报告")
    for channel, title in (("self-declaration", "农户自主申报"), ("cadre-visit", "基层干部排查"),
                           ("social-clue", "社会信息补充"))
)


def event_feed(department: str, feed: str) -> Feed:
    """The catalogue entry of a department feed (a department module declares its columns against it)."""
    for entry in EVENT_FEEDS:
        if (entry.department, entry.feed) == (department, feed):
            return entry
    raise KeyError(f"{department} {feed} is not a feed of schemas/catalog.py")


def monitored_feeds() -> tuple[Feed, ...]:
    """Every feed the monitor consumes: the department feeds and the intake channels."""
    return EVENT_FEEDS + INTAKE_CHANNELS


def feed_of_topic(topic: str) -> Feed | None:
    """The monitored feed published on `topic`, if any."""
    return _BY_TOPIC.get(topic)


def feeds_of_rule(rule: str) -> tuple[Feed, ...]:
    """The monitored feeds (department feeds and intake channels) that `rule` judges."""
    return tuple(feed for feed in monitored_feeds() if rule in feed.rules)


def event_topics() -> tuple[str, ...]:
    """The department event topics, in catalogue order."""
    return tuple(feed.topic for feed in EVENT_FEEDS)


def intake_topics() -> tuple[str, ...]:
    """The intake channels' topics, in catalogue order."""
    return tuple(channel.topic for channel in INTAKE_CHANNELS)


_BY_TOPIC = {feed.topic: feed for feed in monitored_feeds()}


def departments() -> list[str]:
    """Every department that sends data (each has its dead-letter topic), sorted."""
    return sorted({feed.department for feed in EVENT_FEEDS} | {ROSTER.department})


@dataclass(frozen=True)
class ComparisonDepartment:
    """A department the bureau asks to compare persons with its data (比对, the DATA_COMPARE step): it answers
    from a source in the layout of its `feeds` (docs/feeds.md), one `ComparisonResult` per person key asked.
    Its topics are not monitored feeds: the monitor never reads them; the case side does (services.compare)."""

    department: str
    title: str  # the department's Chinese name
    what: str  # what it compares, in Chinese
    feeds: tuple[Feed, ...]

    @property
    def request_topic(self) -> str:
        return comparison_request_topic(self.department)

    @property
    def result_topic(self) -> str:
        return comparison_result_topic(self.department)


# The plan's comparison (docs/domain.md, "六个一" step 5): deposits, vehicles and housing first, then the others.
COMPARISON_DEPARTMENTS: tuple[ComparisonDepartment, ...] = (
    ComparisonDepartment("pboc", "人民银行博州中心支行", "存贷款", (event_feed("pboc", "deposit-loan"),)),
    ComparisonDepartment("natural-resources", "自然资源局", "商品住房",
                         (event_feed("natural-resources", "commercial-housing"),)),
    ComparisonDepartment("public-security", "公安局", "车辆、户籍",
                         (event_feed("public-security", "vehicle-purchase"),
                          event_feed("public-security", "identity-check"))),
    ComparisonDepartment("farm-machinery", "农机中心", "农机购置",
                         (event_feed("farm-machinery", "machinery-purchase"),)),
    ComparisonDepartment("market-regulation", "市场监管局", "市场主体登记",
                         (event_feed("market-regulation", "business-registration"),)),
)


def comparison_department(department: str) -> ComparisonDepartment:
    """The comparison entry of `department` (KeyError naming the five when it is not one of them)."""
    for entry in COMPARISON_DEPARTMENTS:
        if entry.department == department:
            return entry
    known = ", ".join(c.department for c in COMPARISON_DEPARTMENTS)
    raise KeyError(f"{department} answers no comparison requests (departments that do: {known})")


def comparison_request_topics() -> tuple[str, ...]:
    return tuple(c.request_topic for c in COMPARISON_DEPARTMENTS)


def comparison_result_topics() -> tuple[str, ...]:
    return tuple(c.result_topic for c in COMPARISON_DEPARTMENTS)


def project_topics() -> list[TopicSpec]:
    """Every topic povwatch uses. Registry topics are compacted: the latest record per key wins."""
    specs = [TopicSpec(REGISTRY_PERSONS, compacted=True), TopicSpec(REGISTRY_HOUSEHOLDS, compacted=True),
             TopicSpec(REGISTRY_HOUSEHOLD_STATUS, compacted=True)]
    specs += [TopicSpec(topic) for topic in event_topics()]
    specs += [TopicSpec(topic) for topic in intake_topics()]
    specs += [TopicSpec(dlq_topic(d)) for d in departments()] + [TopicSpec(MONITOR_DLQ), TopicSpec(CASEFEED_DLQ)]
    specs += [TopicSpec(ALERTS_HOUSEHOLD), TopicSpec(ALERTS_REGIONAL), TopicSpec(PROFILES_HOUSEHOLD, compacted=True)]
    specs += [TopicSpec(topic) for topic in comparison_request_topics() + comparison_result_topics()]
    specs += [AUDIT_TOPIC]
    return specs
