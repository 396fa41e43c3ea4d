"""The synthetic Bortala population and its department feed files (services/demo/population.py, feeds.py)."""
from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from connectors import catalog as connectors_catalog
from connectors.fields import Choice, MultiChoice
from connectors.framework import Accepted, EventHandler, FeedSpec, Summary, ValidRecord, run_rows
from connectors.idcard import check_character
from connectors.pseudonym import Pseudonymiser
from connectors.sources import file_source
from schemas import catalog
from schemas.codec import default_codec
from services.demo.feeds import YEAR_SPAN_DAYS, event_day
from services.demo.population import DemoFiles, generate, write_manifest
from services.intake.mapping import Invalid, Report
from services.intake.mapping import validate as validate_request
from services.monitor.rules import Rule, Severity
from tests.unit.doubles import TEST_KEY, MemoryPublisher

TODAY = dt.date(2025, 6, 30)
EARLIEST = TODAY - dt.timedelta(days=548)  # 18 months

# The names of the feed contract, copied here on purpose (not imported from the module under test).
ROSTER = ["户编号", "姓名", "身份证号码", "性别", "与户主关系", "行政区划代码", "户类型", "监测状态", "劳动能力",
          "上年人均纯收入", "家庭人口数"]
HEADERS = {
    "registration-change": ["姓名", "身份证号码", "变动类型", "变动日期", "备注"],
    "vehicle-purchase": ["姓名", "身份证号码", "车辆类型", "品牌型号", "购买日期", "上牌日期", "购车价格"],
    "hospitalization": ["姓名", "身份证号码", "疾病名称", "入院日期", "住院天数", "医疗总费用", "个人自付金额",
                        "结算日期"],
    "disaster-loss": ["户主姓名", "户主身份证号码", "行政区划代码", "灾害类型", "灾害发生日期", "死亡人数", "受伤人数",
                      "房屋损毁", "直接经济损失"],
    "dropout": ["学生姓名", "学生身份证号码", "学校名称", "学段", "年级", "辍学日期"],
}
DATE_COLUMNS = {"变动日期", "购买日期", "上牌日期", "入院日期", "结算日期", "灾害发生日期", "辍学日期"}
ID_COLUMNS = {"身份证号码", "户主身份证号码", "学生身份证号码"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(tmp_path_factory.mktemp("demo"), households=300, today=TODAY)


def _header(text: str) -> str:
    return re.sub(r"[(（]元[)）]$", "", text.strip(" \u3000"))


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("gb18030")


def _table(path: Path) -> list[dict[str, object]]:
    """Rows as {normalised header: cell}; XLSX cells keep their type."""
    if path.suffix == ".xlsx":
        rows = list(openpyxl.load_workbook(path).active.iter_rows(values_only=True))
    else:
        rows = list(csv.reader(io.StringIO(_decode(path.read_bytes()))))
    header = [_header(str(h)) for h in rows[0]]
    return [dict(zip(header, row)) for row in rows[1:]]


def _date(cell: object) -> dt.date | None:
    if isinstance(cell, dt.datetime):
        return cell.date()
    if isinstance(cell, dt.date):
        return cell
    m = re.fullmatch(r"(\d{4})(?:[-/年](\d{1,2})[-/月](\d{1,2})日?|(\d{2})(\d{2}))", str(cell or "").strip())
    if not m:
        return None
    year, month, day = int(m[1]), int(m[2] or m[4]), int(m[3] or m[5])
    return dt.date(year, month, day)


def _valid_id(number: str) -> bool:
    return len(number) == 18 and number[:17].isdigit() and check_character(number[:17]) == number[17]


def _roster(demo: DemoFiles) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(demo.roster.read_text("utf-8-sig"))))


def test_same_seed_gives_byte_identical_files(demo: DemoFiles, tmp_path: Path) -> None:
    again = generate(tmp_path / "a", households=300, today=TODAY)
    def files(d: DemoFiles) -> list[Path]:
        return [d.roster, *(path for _, _, path in d.feeds)]

    for first, second in zip(files(demo), files(again)):
        assert first.name == second.name
        assert first.read_bytes() == second.read_bytes(), first.name
    assert (again.expected_alerts, again.expected_regional, again.bad_rows, again.rows, again.intake) == (
        demo.expected_alerts, demo.expected_regional, demo.bad_rows, demo.rows, demo.intake)
    assert len(demo.feeds) == len(catalog.EVENT_FEEDS)
    other = generate(tmp_path / "b", households=300, seed=7, today=TODAY)
    assert other.roster.read_bytes() != demo.roster.read_bytes()


def test_roster_ids_are_valid_and_unique(demo: DemoFiles) -> None:
    rows = _roster(demo)
    ids = [r["身份证号码"] for r in rows]
    assert len(ids) == len(set(ids))
    invalid = [r for r in rows if not _valid_id(r["身份证号码"])]
    assert len(invalid) == 1  # the seeded bad check character
    households = Counter(r["户编号"] for r in rows)
    assert len(households) == 303  # 300 + the three carrying the invalid roster rows
    for r in rows:
        if r in invalid or r["性别"] not in ("男", "女") or len(r["行政区划代码"]) != 12:
            continue
        number = r["身份证号码"]
        assert number[:6] == r["行政区划代码"][:6] and re.fullmatch(r"H\d{12}-\d{4}", r["户编号"])
        assert dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14])) <= TODAY
        assert (int(number[16]) % 2 == 1) == (r["性别"] == "男")
        assert int(r["家庭人口数"]) == households[r["户编号"]]
        assert 6000 <= int(r["上年人均纯收入"]) <= 30000
    assert sum(r["性别"] not in ("男", "女") for r in rows) == 1
    assert sum(len(r["行政区划代码"]) != 12 for r in rows) == 1
    assert {r["与户主关系"] for r in rows} <= {"户主", "配偶", "子", "女", "父亲", "母亲", "孙子", "孙女", "其他"}
    assert {r["监测状态"] for r in rows} <= {"未纳入", "监测中", "风险消除"}


def test_encodings_are_as_specified(demo: DemoFiles) -> None:
    files = {feed: path for _, feed, path in demo.feeds}
    assert demo.roster.read_bytes().startswith(b"\xef\xbb\xbf")
    for feed in ("registration-change", "hospitalization"):
        raw = files[feed].read_bytes()
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
        raw.decode("gb18030")
    files["hospitalization"].read_bytes().decode("gbk")
    assert files["disaster-loss"].read_bytes().startswith(b"\xef\xbb\xbf")
    vehicle = files["vehicle-purchase"].read_bytes()
    assert not vehicle.startswith(b"\xef\xbb\xbf")
    vehicle.decode("utf-8")
    assert files["dropout"].suffix == ".xlsx"


def test_headers_are_the_feeds_md_names(demo: DemoFiles) -> None:
    assert next(csv.reader(io.StringIO(demo.roster.read_text("utf-8-sig")))) == ROSTER
    assert sorted(feed for _, feed, _ in demo.feeds[:len(HEADERS)]) == sorted(HEADERS)  # the headline feeds first
    for _, feed, path in demo.feeds:
        if feed in HEADERS:
            assert list(_table(path)[0]) == HEADERS[feed]
    raw_vehicle_header = dict((f, p) for _, f, p in demo.feeds)["vehicle-purchase"].read_text("utf-8").splitlines()[0]
    assert "\u3000" in raw_vehicle_header and "  购车价格（元）" in raw_vehicle_header


def test_expected_alerts_refer_to_roster_households(demo: DemoFiles) -> None:
    rows = _roster(demo)
    households = {r["户编号"] for r in rows}
    assert {a.household_id for a in demo.expected_alerts} <= households
    assert {a.rule for a in demo.expected_alerts} <= {r.value for r in Rule}
    assert {a.severity for a in demo.expected_alerts} <= {s.value for s in Severity}
    assert len(demo.expected_regional) == 1 and demo.expected_regional <= {r["行政区划代码"] for r in rows}
    counts = Counter((a.rule, a.severity) for a in demo.expected_alerts)
    assert counts[("DEATH_IN_HOUSEHOLD", "HIGH")] >= 8 and counts[("DEATH_IN_HOUSEHOLD", "MEDIUM")] >= 8
    assert counts[("MEDICAL_EXPENSE", "HIGH")] >= 8 and counts[("MEDICAL_EXPENSE", "MEDIUM")] >= 8
    assert counts[("DISASTER_LOSS", "HIGH")] >= 6 and counts[("DISASTER_LOSS", "MEDIUM")] >= 6
    assert counts[("SCHOOL_DROPOUT", "HIGH")] == 6 and counts[("ASSET_PURCHASE", "LOW")] == 5
    # the three households carrying the invalid roster rows appear in no scenario
    bad_households = {r["户编号"] for r in rows if not _valid_id(r["身份证号码"]) or r["性别"] not in ("男", "女")
                      or len(r["行政区划代码"]) != 12}
    assert len(bad_households) == 3 and not bad_households & {a.household_id for a in demo.expected_alerts}


def test_regional_village_has_six_households_within_five_days(demo: DemoFiles) -> None:
    rows = _table(dict((f, p) for _, f, p in demo.feeds)["disaster-loss"])
    (village,) = demo.expected_regional
    hit = [r for r in rows if r["行政区划代码"] == village]
    dates = [_date(r["灾害发生日期"]) for r in hit]
    assert len({r["户主身份证号码"] for r in hit}) == 6 and {r["灾害类型"] for r in hit} == {"洪涝"}
    assert max(dates) - min(dates) <= dt.timedelta(days=5)
    per_village = Counter(r["行政区划代码"] for r in rows)
    assert sorted(per_village.values())[-2:] == [4, 6]


def test_no_valid_event_date_after_today_or_older_than_18_months(demo: DemoFiles) -> None:
    for _, feed, path in demo.feeds:
        rows = _table(path)
        suspicious = 0
        for row in rows:
            dates = [row[c] for c in DATE_COLUMNS if c in row]
            parsed = [_date(cell) for cell in dates]
            if any(d is None or d > TODAY for d in parsed):
                suspicious += 1
                future = [d for d in parsed if d is not None and d > TODAY]
                assert all(d.year >= TODAY.year + 50 for d in future), feed  # only the seeded far-future typos
                continue
            assert all(EARLIEST <= d <= TODAY for d in parsed), (feed, row)
        assert suspicious <= demo.bad_rows[feed]


def test_feed_ids_are_valid_except_seeded_bad_rows(demo: DemoFiles) -> None:
    legacy = 0
    for _, feed, path in demo.feeds:
        if feed not in HEADERS:
            continue  # every other feed: test_every_other_row_is_about_the_roster
        invalid = 0
        for row in _table(path):
            number = str(next(row[c] for c in ID_COLUMNS if c in row) or "")
            if len(number) == 15:
                legacy += 1
                assert feed == "vehicle-purchase" and number.isdigit()
            elif not _valid_id(number):
                invalid += 1
        assert invalid == 1, feed  # the seeded bad check character (or, in the dropout file, a missing number)
    assert legacy == 1


def test_hospitalization_file_mixes_formats_and_holds_one_exact_duplicate(demo: DemoFiles) -> None:
    path = dict((f, p) for _, f, p in demo.feeds)["hospitalization"]
    lines = path.read_bytes().decode("gbk").splitlines()[1:]
    assert sorted(Counter(lines).values())[-1] == 2 and sum(n - 1 for n in Counter(lines).values()) == 1
    admissions = [r["入院日期"] for r in _table(path)]
    assert any(re.fullmatch(r"\d{4}-\d{2}-\d{2}", a) for a in admissions)
    assert any(re.fullmatch(r"\d{4}/\d{1,2}/\d{1,2}", a) for a in admissions)
    assert any(re.fullmatch(r"\d{8}", a) for a in admissions)
    assert any("年" in a for a in admissions)
    assert any(re.fullmatch(r"\d{1,3}(,\d{3})+\.\d{2}", r["医疗总费用"]) for r in _table(path))
    assert any(r["个人自付金额"].startswith("-") for r in _table(path))


def test_xlsx_opens_with_openpyxl_and_mixes_date_cells_and_text(demo: DemoFiles) -> None:
    path = dict((f, p) for _, f, p in demo.feeds)["dropout"]
    sheet = openpyxl.load_workbook(path).active
    cells = [row[5] for row in sheet.iter_rows(min_row=2, values_only=True)]
    assert any(isinstance(c, dt.datetime) for c in cells) and any(isinstance(c, str) for c in cells)
    assert {row[3] for row in sheet.iter_rows(min_row=2, values_only=True)} >= {"小学", "初中", "高中", "中职"}


def test_bad_rows_are_counted_per_feed(demo: DemoFiles) -> None:
    assert set(demo.bad_rows) == {*(f.feed for f in catalog.EVENT_FEEDS), "roster"}
    assert demo.bad_rows["roster"] == 3
    assert all(2 <= demo.bad_rows[feed] <= 4 for feed in demo.bad_rows)


def test_manifest_is_json(demo: DemoFiles, tmp_path: Path) -> None:
    write_manifest(demo, tmp_path / "manifest.json")
    manifest = json.loads((tmp_path / "manifest.json").read_text("utf-8"))
    assert manifest["expected_alerts"]["total"] == len(demo.expected_alerts)
    assert manifest["expected_regional"] == sorted(demo.expected_regional)
    assert [f["feed"] for f in manifest["feeds"]] == [feed for _, feed, _ in demo.feeds]
    assert all(f["rows"] == demo.rows[f["feed"]] and f["bad_rows"] == demo.bad_rows[f["feed"]]
               for f in manifest["feeds"])
    assert sum(c["posted"] for c in manifest["intake"]) == len(demo.intake)


def test_too_small_a_population_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, households=50, today=TODAY)


# --- every feed of the catalogue --------------------------------------------------------------------------------
NOON = dt.datetime(2025, 6, 30, 4, 0, tzinfo=dt.UTC)  # noon in Bortala on TODAY


class _Keeping:
    """EventHandler, keeping every valid record it is given."""

    def __init__(self, spec: FeedSpec) -> None:
        self.inner = EventHandler(spec, pseudonymiser=Pseudonymiser(TEST_KEY), codec=default_codec(),
                                  clock=lambda: NOON)
        self.records: list[ValidRecord] = []

    def handle(self, record: ValidRecord, source: dict[str, Any]) -> Accepted | list[str]:
        self.records.append(record)
        return self.inner.handle(record, source)

    def finish(self) -> list[Any]:
        return []


@pytest.fixture(scope="module")
def connected(demo: DemoFiles) -> dict[str, tuple[Summary, list[ValidRecord]]]:
    """Every feed file through the real connector loop (in memory): its summary and its valid records."""
    out = {}
    for department, feed, path in demo.feeds:
        spec = connectors_catalog.get_feed(department, feed)
        handler = _Keeping(spec)
        summary = asyncio.run(run_rows(spec, file_source(path), handler, MemoryPublisher(), codec=default_codec(),
                                       clock=lambda: NOON))
        out[feed] = (summary, handler.records)
    return out


def test_every_catalogue_feed_gets_a_file(demo: DemoFiles) -> None:
    assert [(d, f) for d, f, _ in demo.feeds[len(HEADERS):]] == [
        (f.department, f.feed) for f in catalog.EVENT_FEEDS if f.feed not in HEADERS]  # in catalogue order
    assert {(d, f) for d, f, _ in demo.feeds} == {(f.department, f.feed) for f in catalog.EVENT_FEEDS}
    assert len({path.name for _, _, path in demo.feeds}) == len(demo.feeds)
    suffixes = Counter(path.suffix for _, feed, path in demo.feeds if feed not in HEADERS)
    assert suffixes[".xlsx"] == 1 and suffixes[".csv"] == len(catalog.EVENT_FEEDS) - len(HEADERS) - 1
    encodings: Counter[str] = Counter()
    for _, feed, path in demo.feeds:
        if feed in HEADERS or path.suffix != ".csv":
            continue
        raw = path.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):
            encodings["utf-8-sig"] += 1
        else:
            try:
                raw.decode("utf-8")
                encodings["utf-8"] += 1
            except UnicodeDecodeError:
                raw.decode("gb18030")
                encodings["gb18030"] += 1
    assert min(encodings["utf-8-sig"], encodings["utf-8"], encodings["gb18030"]) >= 3


def test_rows_read_are_rows_published_and_rejected_as_seeded(
        demo: DemoFiles, connected: Mapping[str, tuple[Summary, list[ValidRecord]]]) -> None:
    for _, feed, _ in demo.feeds:
        summary, _ = connected[feed]
        assert summary.balanced, feed
        assert (summary.read, summary.rejected, summary.duplicates) == (
            demo.rows[feed], demo.bad_rows[feed], demo.duplicates[feed]), feed
        if feed not in HEADERS:
            assert 20 <= demo.rows[feed] <= 204 and demo.bad_rows[feed] == 4 and demo.duplicates[feed] == 0
            assert all(len(reasons) == 1 for _, reasons in summary.rejects), (feed, summary.rejects)


def test_bad_rows_are_of_the_four_kinds(connected: Mapping[str, tuple[Summary, list[ValidRecord]]]) -> None:
    for spec in connectors_catalog.EVENT_FEEDS.values():
        if spec.feed in HEADERS:
            continue
        reasons = " | ".join(r for _, rs in connected[spec.feed][0].rejects for r in rs)
        assert "not a date" in reasons or "not a year" in reasons, spec.feed
        assert "missing" in reasons, spec.feed
        if any(isinstance(c.parser, (Choice, MultiChoice)) for c in spec.columns):
            assert "unknown value" in reasons, spec.feed
        if any(c.sensitive == "id" and c.required for c in spec.columns):
            assert "check character" in reasons, spec.feed


def test_every_other_row_is_about_the_roster(
        demo: DemoFiles, connected: Mapping[str, tuple[Summary, list[ValidRecord]]]) -> None:
    """Valid rows: ID numbers of roster members (household heads where the feed links by household, or a head
    of that village where a village-level feed names one), their names, roster villages, event dates within the
    18 months up to today, every label of each enumeration used."""
    rows = _roster(demo)
    person = {r["身份证号码"]: r for r in rows}
    heads = {r["身份证号码"] for r in rows if r["与户主关系"] == "户主"}
    villages = {r["行政区划代码"] for r in rows}
    for spec in connectors_catalog.EVENT_FEEDS.values():
        if spec.feed in HEADERS:
            continue
        _, records = connected[spec.feed]
        named = 0
        for record in records:
            values = record.values
            day = event_day(values[spec.occurred_at])
            if isinstance(values[spec.occurred_at], int):  # dated by its 年度: 1 January of a recent year
                assert TODAY - dt.timedelta(days=YEAR_SPAN_DAYS) <= day <= TODAY, (spec.feed, day)
            else:
                assert EARLIEST <= day <= TODAY, (spec.feed, day)
            ids = [values[c.field] for c in spec.columns if c.sensitive == "id" and values[c.field]]
            names = [values[c.field] for c in spec.columns if c.sensitive == "name"]
            named += bool(ids)
            for number in ids:
                assert number in person, spec.feed
                if spec.wire.link != "person":
                    assert number in heads, spec.feed
                assert all(name == person[number]["姓名"] for name in names), spec.feed
            if "village_code" in values:
                assert values["village_code"] in villages, spec.feed
                if ids:
                    assert person[ids[0]]["行政区划代码"] == values["village_code"], spec.feed
        if spec.wire.link == "village" and any(c.sensitive == "id" for c in spec.columns):
            assert 0 < named < len(records), spec.feed  # some rows name a household, some the whole village
        for col in spec.columns:
            if isinstance(col.parser, Choice) and col.label not in ROSTER and len(records) >= len(col.parser.labels):
                assert {values[col.field] for values in (r.values for r in records)} == set(
                    col.parser.labels.values()), (spec.feed, col.field)


def test_other_feeds_spread_their_dates_over_the_months(
        connected: Mapping[str, tuple[Summary, list[ValidRecord]]]) -> None:
    for spec in connectors_catalog.EVENT_FEEDS.values():
        if spec.feed not in HEADERS:
            days = [r.values[spec.occurred_at] for r in connected[spec.feed][1]]
            if all(isinstance(day, dt.date) for day in days):  # (not those dated by a 年度)
                assert max(days) - min(days) >= dt.timedelta(days=300), spec.feed


def test_intake_requests_per_channel(demo: DemoFiles) -> None:
    rows = _roster(demo)
    heads = {r["身份证号码"] for r in rows if r["与户主关系"] == "户主"}
    households = {r["户编号"] for r in rows}
    channels = Counter(r.channel for r in demo.intake)
    assert set(channels) == {c.feed for c in catalog.INTAKE_CHANNELS}
    for channel in channels:
        sent = [r for r in demo.intake if r.channel == channel]
        assert 20 <= len(sent) <= 60
        assert [r.expect for r in sent].count(422) == 1 and sum(r.replay for r in sent) == 1
        by_head = by_household = 0
        for request in sent:
            result = validate_request(channel, request.body, TODAY)
            assert isinstance(result, Invalid if request.expect == 422 else Report), (channel, request.body)
            if request.expect == 202:
                by_head += "head_id_number" in request.body
                by_household += "household_id" in request.body
                assert request.body.get("head_id_number", next(iter(heads))) in heads
                assert request.body.get("household_id", next(iter(households))) in households
        assert by_head and by_household
        replay = next(r for r in sent if r.replay)
        assert sum(r.body == replay.body for r in sent) == 2 and "request_id" in replay.body


def test_a_declared_check_is_honoured_whatever_it_asks(demo: DemoFiles) -> None:
    """The generator knows no feed's checks: a variant the declaration rejects is drawn again, so a check added
    to a declaration (here: amounts no larger than the example's) never lets an invalid row into a file."""
    import dataclasses
    import random
    from decimal import Decimal

    from connectors.framework import RawRow, validate
    from services.demo.feeds import Household, Member, feed_rows

    spec = connectors_catalog.get_feed("farm-machinery", "machinery-purchase")

    def at_most_example(values: Mapping[str, Any]) -> str | None:
        return "purchase_price: above the example" if values["purchase_price"] > Decimal(168000) else None

    strict = dataclasses.replace(spec, checks=(*spec.checks, at_most_example))
    roster = _roster(demo)
    households: dict[str, list[dict[str, str]]] = {}
    for r in roster:
        if _valid_id(r["身份证号码"]) and r["性别"] in ("男", "女") and len(r["行政区划代码"]) == 12:
            households.setdefault(r["户编号"], []).append(r)
    members = [Household(hid, rows[0]["行政区划代码"], tuple(
        Member(r["姓名"], r["身份证号码"], r["性别"] == "男", r["与户主关系"],
               dt.date(int(r["身份证号码"][6:10]), int(r["身份证号码"][10:12]), int(r["身份证号码"][12:14])))
        for r in sorted(rows, key=lambda r: r["与户主关系"] != "户主"))) for hid, rows in households.items()]
    good, bad = feed_rows(strict, members, count=60, rng=random.Random(1), today=TODAY)
    assert len(good) == 60 and len(bad) == 4
    for i, cells in enumerate(good):
        text = {k: v.isoformat() if isinstance(v, dt.date) else v for k, v in cells.items()}
        assert isinstance(validate(strict, RawRow(i + 2, text), TODAY), ValidRecord)
    prices = {cells["purchase_price"] for cells in good}
    assert len(prices) > 10  # still varied where the check allows it
