"""`povwatch feeds list|template`: the catalogue and the templates come from the feed declarations alone."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.catalog import EVENT_FEEDS, ROSTER
from connectors.describe import catalogue, catalogue_json, find, render_catalogue, write_template
from connectors.readers import read_table
from schemas import catalog
from schemas.errors import InputFileError, UnknownFeed
from services.cli import main


def test_the_catalogue_is_the_declarations() -> None:
    entries = catalogue()
    assert [(e.department, e.feed) for e in entries] == [("bureau", "roster"), *EVENT_FEEDS]
    for entry, wire in zip(entries[1:], catalog.EVENT_FEEDS, strict=True):
        assert (entry.topic, entry.schema, entry.dead_letters) == (wire.topic, wire.schema, wire.dlq)
    hosp = next(e for e in entries if e.feed == "hospitalization")
    assert [c.label for c in hosp.columns] == ["姓名", "身份证号码", "疾病名称", "入院日期", "住院天数", "医疗总费用",
                                               "个人自付金额", "结算日期"]
    assert hosp.occurred_at == "admission_date"
    listed = json.loads(catalogue_json(entries))
    assert len(listed) == len(EVENT_FEEDS) + 1 and listed[0]["columns"][0] == {"label": "户编号",
                                                                               "field": "household_id",
                                                                               "required": True}
    text = render_catalogue(entries)
    assert "medical-security hospitalization 住院  ->  events.medical-security.hospitalization" in text
    assert "备注 (可选)" in text  # an optional column says so
    assert ("links by village (行政区划代码; the person or household when named); rules: WATER_UNSAFE, REGIONAL_WATER"
            in text)
    assert "links by household (户主身份证号码); rules: DISASTER_LOSS, REGIONAL_DISASTER" in text
    assert "links by person (身份证号码); kept by the monitor as facts" in text  # identity-check, student-aid
    water = next(e for e in listed if e["feed"] == "drinking-water")
    assert (water["title"], water["links_by"], water["rules"]) == ("安全饮水", "village",
                                                                   ["WATER_UNSAFE", "REGIONAL_WATER"])


@pytest.mark.parametrize("xlsx", [False, True])
def test_a_template_has_exactly_the_headers_the_connector_reads(tmp_path: Path, xlsx: bool) -> None:
    for spec in [ROSTER, *EVENT_FEEDS.values()]:
        path = write_template(spec, tmp_path / f"{spec.department}-{spec.feed}.{'xlsx' if xlsx else 'csv'}",
                              xlsx=xlsx)
        table = read_table(path)
        assert table.headers == [c.label for c in spec.columns]
        assert list(table.rows) == []
        if not xlsx:
            assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel opens UTF-8 with a BOM


def test_a_template_never_overwrites_and_an_unknown_feed_is_named(tmp_path: Path) -> None:
    spec = find("education", "dropout")
    path = write_template(spec, tmp_path / "dropout.csv", xlsx=False)
    before = path.read_bytes()
    with pytest.raises(InputFileError, match="exists already"):
        write_template(spec, path, xlsx=False)
    assert path.read_bytes() == before
    with pytest.raises(UnknownFeed, match="unknown feed education surgery; known feeds: bureau roster"):
        find("education", "surgery")


def test_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["feeds", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(EVENT_FEEDS) + 1
    out = tmp_path / "roster.xlsx"
    assert main(["feeds", "template", "bureau", "roster", "--xlsx", "--out", str(out)]) == 0
    assert read_table(out).headers[:3] == ["户编号", "姓名", "身份证号码"]
    assert main(["feeds", "template", "bureau", "roster", "--xlsx", "--out", str(out)]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["feeds", "template", "bureau"]) == 2


def test_the_connector_help_lists_every_feed_of_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["connector", "--help"])
    text = capsys.readouterr().out
    for feed in catalog.EVENT_FEEDS:
        assert f"{feed.department} {feed.feed}" in text and feed.title in text
