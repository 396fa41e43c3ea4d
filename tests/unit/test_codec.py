"""The Avro single-object codec: round trips, the wire header, errors. `test_independent_decode` reads the
messages with nothing but the .avsc files and fastavro, as a consumer outside this codebase would."""
from __future__ import annotations

import datetime as dt
import io
import struct
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form

from schemas.codec import AVRO_DIR, MAGIC, Codec, default_codec
from schemas.errors import DecodeError, SchemaError

CODEC = default_codec()
# the published .avsc files, found from the repository layout (not through schemas.codec)
AVSC_FILES = Path(__file__).resolve().parents[2] / "schemas" / "avro"
NOW = dt.datetime(2024, 7, 1, 9, 30, 15, 123000, tzinfo=dt.UTC)
KEY = "3f1d5a9c" * 8  # a person_key: 64 hex characters
VILLAGE = "652701100201"


def source(feed: str = "hospitalization", department: str = "medical-security", row: int = 2) -> dict[str, Any]:
    return {"department": department, "feed": feed, "origin": "住院结算_202404.csv", "row": row,
            "connector_version": "0.1.0", "key_id": "1a2b3c4d"}


def person() -> dict[str, Any]:
    return {"person_key": KEY, "household_id": "BL-100201-0001", "relation": "户主", "sex": "M",
            "birth_date": dt.date(1968, 3, 5), "village_code": VILLAGE, "ingested_at": NOW,
            "source": source("roster", "bureau")}


RECORDS: dict[str, dict[str, Any]] = {
    "povwatch.Source": source(),
    "povwatch.DeadLetter": {
        "source": source(row=3), "stage": "connector",
        "reasons": ["out_of_pocket: negative amount", "id_number: invalid ID number: check character is X, expected 7"],
        "fields": {"name": "<redacted name>", "id_number": "<redacted id>", "out_of_pocket": "-30"},
        "rejected_at": NOW, "message": None,
    },
    "povwatch.MessageOrigin": {"topic": "alerts.household", "partition": 2, "offset": 41},
    "povwatch.events.Hospitalization": {
        "event_id": "a" * 32, "person_key": KEY, "occurred_at": dt.date(2024, 3, 5), "ingested_at": NOW,
        "source": source(), "disease": "脑梗死", "admission_date": dt.date(2024, 3, 5), "days": 12,
        "total_cost": Decimal("38200.00"), "out_of_pocket": Decimal("14500.00"),
        "settlement_date": dt.date(2024, 3, 18),
    },
    "povwatch.events.RegistrationChange": {
        "event_id": "b" * 32, "person_key": KEY, "occurred_at": dt.date(2024, 5, 2), "ingested_at": NOW,
        "source": source("registration-change", "public-security"), "change_type": "DEATH",
        "change_date": dt.date(2024, 5, 2), "remark": "<name-redacted>本人身份证<id-redacted>已核实",
    },
    "povwatch.events.VehiclePurchase": {
        "event_id": "c" * 32, "person_key": KEY, "occurred_at": dt.date(2024, 5, 1), "ingested_at": NOW,
        "source": source("vehicle-purchase", "public-security"), "vehicle_type": "小型轿车", "model": "比亚迪秦PLUS",
        "purchase_date": dt.date(2024, 5, 1), "registration_date": dt.date(2024, 5, 8),
        "price": Decimal("119800.00"),
    },
    "povwatch.events.DisasterLoss": {
        "event_id": "d" * 32, "person_key": KEY, "occurred_at": dt.date(2024, 6, 20), "ingested_at": NOW,
        "source": source("disaster-loss", "emergency"), "village_code": VILLAGE, "disaster_type": "FLOOD",
        "disaster_date": dt.date(2024, 6, 20), "deaths": 0, "injuries": 2, "house_damage": "SERIOUS",
        "direct_loss": Decimal("52000.00"),
    },
    "povwatch.events.Dropout": {
        "event_id": "e" * 32, "person_key": KEY, "occurred_at": dt.date(2024, 3, 11), "ingested_at": NOW,
        "source": source("dropout", "education"), "school": "博乐市第三中学", "stage": "JUNIOR", "grade": "八年级",
        "dropout_date": dt.date(2024, 3, 11),
    },
    "povwatch.events.IntakeReport": {
        "event_id": "9" * 32, "head_person_key": KEY, "household_id": None, "occurred_at": dt.date(2024, 6, 3),
        "ingested_at": NOW, "source": {"department": "intake", "feed": "cadre-visit",
                                       "origin": "POST /v1/intake/cadre-visit", "row": 0, "connector_version": "0.1.0",
                                       "key_id": "1a2b3c4d"},
        "channel": "CADRE_SCREENING", "risk_type": "ILLNESS", "reported_on": dt.date(2024, 6, 3),
        "description": "户主脑梗后卧床, 家中无劳动力, 联系电话<phone-redacted>", "visit_result": "AT_RISK",
        "clue_source": None,
    },
    "povwatch.registry.Person": person(),
    "povwatch.registry.Household": {
        "household_id": "BL-100201-0001", "village_code": VILLAGE, "head_person_key": KEY, "category": "LIFTED",
        "monitoring_status": "MONITORING", "labour_capacity": "WEAK", "per_capita_income": Decimal("6800.00"),
        "household_size": 3, "ingested_at": NOW, "source": source("roster", "bureau"),
    },
    "povwatch.audit.AuditRecord": {
        "party": "intake", "instance": "host-1", "seq": 7, "at": NOW, "kind": "intake.request",
        "subjects": ["household:BL-100201-0001"], "counts": {}, "details": {"channel": "self-declaration"},
        "prev_hash": "0" * 64, "hash": "f" * 64,
    },
    "povwatch.registry.HouseholdStatus": {
        "household_id": "BL-100201-0001", "monitoring_status": "MONITORING", "category": "SUDDEN_HARDSHIP",
        "decided_at": NOW, "case_id": 12, "step": "LABEL",
    },
    "povwatch.alerts.HouseholdAlert": {
        "alert_id": "f" * 32, "household_id": "BL-100201-0001", "village_code": VILLAGE, "rule": "MEDICAL_EXPENSE",
        "severity": "HIGH", "reason": "住院个人自付14500元(入院2024-03-05, 脑梗死, 12天)", "event_ids": ["a" * 32],
        "occurred_at": dt.date(2024, 3, 5), "raised_at": NOW,
        "event_topics": ["events.medical-security.hospitalization"],
    },
    "povwatch.alerts.RegionalAlert": {
        "alert_id": "0" * 32, "region_code": VILLAGE, "rule": "REGIONAL_DISASTER", "severity": "HIGH",
        "reason": "区域性灾害风险", "household_ids": ["h1", "h2", "h3", "h4", "h5"],
        "event_ids": ["e1", "e2", "e3", "e4", "e5"], "window_start": dt.date(2024, 6, 20),
        "window_end": dt.date(2024, 6, 25), "occurred_at": dt.date(2024, 6, 20), "raised_at": NOW,
    },
    "povwatch.monitor.EnrichedEvent": {
        "topic": "events.medical-security.hospitalization", "event": b"\xc3\x01" + bytes(8) + b"body",
        "person": person(),
    },
    "povwatch.monitor.VillageDisaster": {
        "village_code": VILLAGE, "household_id": "BL-100201-0001", "event_id": "d" * 32,
        "disaster_date": dt.date(2024, 6, 20), "rule": "REGIONAL_ILLNESS", "person_key": None, "group": "布鲁氏菌病",
    },
    "povwatch.monitor.HouseholdEvent": {
        "topic": "events.medical-security.hospitalization", "event": b"\xc3\x01" + bytes(8) + b"body",
        "person_key": KEY, "household_id": "BL-100201-0001", "relation": "户主", "birth_date": dt.date(1968, 3, 5),
        "village_code": VILLAGE,
    },
    "povwatch.monitor.PendingEvent": {
        "topic": "events.medical-security.hospitalization", "event_id": "a" * 32,
        "message": b"\xc3\x01" + bytes(8) + b"body", "since": NOW,
    },
    "povwatch.monitor.PersonState": {"pending": [{
        "topic": "events.medical-security.hospitalization", "event_id": "a" * 32,
        "message": b"\xc3\x01" + bytes(8) + b"body", "since": NOW}]},
    "povwatch.monitor.MedicalStay": {"event_id": "a" * 32, "admission_day": 19787, "out_of_pocket_cents": 1450000,
                                     "high": True},
    "povwatch.monitor.HouseholdState": {
        "seen_ids": ["a" * 32], "seen_days": [19787],
        "stays": [{"event_id": "a" * 32, "admission_day": 19787, "out_of_pocket_cents": 1450000, "high": True}],
        "pending": [],
        "facts": [{"topic": "events.hrss.employment", "event_id": "e" * 32, "person_key": KEY, "day": 19787,
                   "values": {"channel": "ORGANISED", "start_date": "2024-03-05"}}],
        "timers": [{"rule": "JOB_LOSS", "fact": f"{KEY}|2024-06-01", "due_day": 19935, "ref_day": 19875,
                    "event_id": "e" * 32, "person_key": KEY}],
        "profiled": True, "latest_day": 19900,
    },
    "povwatch.monitor.VillageState": {
        "village_code": VILLAGE,
        "records": [{"village_code": VILLAGE, "household_id": "BL-100201-0001", "event_id": "d" * 32,
                     "disaster_date": dt.date(2024, 6, 20), "rule": "REGIONAL_DISASTER", "person_key": None,
                     "group": ""}],
        "fired": [92371],
        "facts": [{"topic": "events.water.drinking-water", "event_id": "f" * 32, "person_key": None, "day": 19787,
                   "values": {"problems": "水量、水质"}}],
        "fired_keys": ["REGIONAL_ILLNESS|布鲁氏菌病|2024-06-10"],
        "timers": [{"rule": "REGIONAL_WATER", "fact": "2024-06-01", "due_day": 19905, "ref_day": 19875,
                    "event_id": "w" * 32, "person_key": None}],
    },
    "povwatch.monitor.Fact": {"topic": "events.water.drinking-water", "event_id": "f" * 32, "person_key": None,
                              "day": 19787, "values": {"problems": "QUANTITY"}},
    "povwatch.monitor.VillageEvent": {"topic": "events.water.drinking-water",
                                      "event": b"\xc3\x01" + bytes(8) + b"body", "village_code": VILLAGE},
    "povwatch.monitor.Timer": {"rule": "JOB_LOSS", "fact": f"{KEY}|2024-06-01", "due_day": 19935,
                               "ref_day": 19875, "event_id": "e" * 32, "person_key": KEY},
    "povwatch.profiles.HouseholdProfile": {
        "household_id": "BL-100201-0001", "village_code": VILLAGE,
        "facts": [{"domain": "收入", "topic": "events.statistics.household-income", "department": "statistics",
                   "feed": "住户收入", "event_id": "i" * 32, "person_key": KEY, "day": dt.date(2025, 1, 1),
                   "values": {"year": "2025", "per_capita_net_income": "8200.00"}}],
        "income_year": 2025, "income_per_capita": Decimal("8200.00"), "updated_at": NOW},
    "povwatch.monitor.Unmatched": {"stage": "person", "topic": "events.public-security.registration-change",
                                   "event_id": "b" * 32, "since": NOW, "expired_at": NOW},
    "povwatch.requests.ComparisonRequest": {"request_id": "r" * 32, "department": "pboc",
                                            "person_keys": [KEY, "0" * 64], "requested_at": NOW, "case_id": 7},
    "povwatch.events.ComparisonResult": {
        "event_id": "c" * 32, "request_id": "r" * 32, "department": "pboc", "person_key": KEY, "found": True,
        "records": [{"feed": "deposit-loan", "deposit_balance": "12500.00", "loan_type": "POVERTY_MICROCREDIT"}],
        "summary": "存贷款：存款余额 12500.00元", "answered_at": NOW},
}


def _feed_events() -> dict[str, dict[str, Any]]:
    """Every other catalogue feed's event, made by its connector from the feed's example row."""
    from connectors.catalog import EVENT_FEEDS
    from connectors.framework import EventHandler, ValidRecord, occurred_on, validate
    from connectors.framework import RawRow as Raw
    from connectors.pseudonym import Pseudonymiser

    out = {}
    for spec in EVENT_FEEDS.values():
        if spec.schema in RECORDS:
            continue
        valid = validate(spec, Raw(2, dict(spec.example)), NOW.date())
        assert isinstance(valid, ValidRecord), valid
        handler = EventHandler(spec, pseudonymiser=Pseudonymiser(b"k" * 32), codec=CODEC, clock=lambda: NOW)
        body = handler.body(valid)
        out[spec.schema] = {"event_id": "c" * 32, "occurred_at": occurred_on(valid.values[spec.occurred_at]),
                            "ingested_at": NOW, "source": source(), **body}
    return out


RECORDS.update(_feed_events())


def test_every_schema_has_a_realistic_record() -> None:
    # Severity, MonitoringStatus and MonitoringCategory are bare enums, used inside the records
    assert sorted([*RECORDS, "povwatch.alerts.Severity", "povwatch.registry.MonitoringStatus",
                   "povwatch.registry.MonitoringCategory"]) == CODEC.names
    assert CODEC.names == sorted(p.name[: -len(".avsc")] for p in AVRO_DIR.glob("*.avsc"))


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_round_trip(name: str) -> None:
    data = CODEC.encode(name, RECORDS[name])
    decoded = CODEC.decode(data)
    assert decoded.name == name
    assert decoded.record == RECORDS[name]
    assert CODEC.decode(data, expect=name).record == RECORDS[name]


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_wire_header_is_single_object_encoding(name: str) -> None:
    data = CODEC.encode(name, RECORDS[name])
    assert data[:2] == b"\xc3\x01" == MAGIC
    # CRC-64-AVRO of the canonical form, computed here from the .avsc file, little-endian on the wire
    canonical = to_parsing_canonical_form(load_schema(str(AVRO_DIR / f"{name}.avsc")))
    expected = int(fingerprint(canonical, "CRC-64-AVRO"), 16)
    assert data[2:10] == CODEC.fingerprint(name)
    # the Avro spec's own CRC-64-AVRO (the reference algorithm, written out) agrees with fastavro's
    assert _crc64_avro(canonical.encode("utf-8")) == struct.unpack("<Q", data[2:10])[0] == \
        struct.unpack("<Q", expected.to_bytes(8, "big"))[0]


def _crc64_avro(data: bytes) -> int:
    """The Avro specification's reference fingerprint64, as the spec writes it."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_independent_decode(name: str) -> None:
    """Decode with the .avsc files and fastavro only (no schemas.codec logic): header, then body."""
    data = CODEC.encode(name, RECORDS[name])
    by_fingerprint = {}
    for path in AVSC_FILES.glob("*.avsc"):
        schema = load_schema(str(path))
        fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))
        by_fingerprint[fp] = (path.name[: -len(".avsc")], schema)
    assert data[:2] == b"\xc3\x01"
    found, schema = by_fingerprint[data[2:10]]
    assert found == name
    assert fastavro.schemaless_reader(io.BytesIO(data[10:]), schema) == RECORDS[name]


def test_decimal_and_timestamp_precision() -> None:
    record = dict(RECORDS["povwatch.events.Hospitalization"], out_of_pocket=Decimal("0.01"),
                  total_cost=Decimal("999999999999.99"))
    back = CODEC.decode(CODEC.encode("povwatch.events.Hospitalization", record)).record
    assert back["out_of_pocket"] == Decimal("0.01") and back["total_cost"] == Decimal("999999999999.99")
    assert back["ingested_at"] == NOW  # milliseconds kept, UTC


# --- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\xc3", b"\xc3\x01\x00", b"hello world, not avro",
                                  b'{"event_id": "x"}', b"\xc3\x02" + bytes(8) + b"\x00"])
def test_garbage_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError, match="no C3 01 marker"):
        CODEC.decode(data)


def test_unknown_fingerprint() -> None:
    data = MAGIC + bytes.fromhex("0102030405060708") + b"\x00"
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint 0102030405060708"):
        CODEC.decode(data)


def test_truncated_body() -> None:
    data = CODEC.encode("povwatch.events.Hospitalization", RECORDS["povwatch.events.Hospitalization"])
    for cut in (10, 11, len(data) // 2, len(data) - 1):
        with pytest.raises(DecodeError, match="povwatch.events.Hospitalization: corrupt body"):
            CODEC.decode(data[:cut])


def test_expect_mismatch() -> None:
    data = CODEC.encode("povwatch.events.Dropout", RECORDS["povwatch.events.Dropout"])
    with pytest.raises(DecodeError, match="expected povwatch.events.Hospitalization, got povwatch.events.Dropout"):
        CODEC.decode(data, expect="povwatch.events.Hospitalization")


def test_decode_error_is_a_schema_error() -> None:
    assert issubclass(DecodeError, SchemaError)


def _without(record: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != key}


@pytest.mark.parametrize("name, record", [
    ("povwatch.events.Hospitalization", _without(RECORDS["povwatch.events.Hospitalization"], "out_of_pocket")),
    ("povwatch.events.Hospitalization", dict(RECORDS["povwatch.events.Hospitalization"], days="twelve")),
    ("povwatch.events.Hospitalization", dict(RECORDS["povwatch.events.Hospitalization"], disease=None)),
    ("povwatch.events.DisasterLoss", dict(RECORDS["povwatch.events.DisasterLoss"], house_damage="倒塌")),
    ("povwatch.events.Dropout", dict(RECORDS["povwatch.events.Dropout"], name="张小明")),
    ("povwatch.registry.Person", dict(RECORDS["povwatch.registry.Person"], source={"department": "bureau"})),
    ("povwatch.DeadLetter", dict(RECORDS["povwatch.DeadLetter"], reasons=[1, 2])),
    ("povwatch.alerts.HouseholdAlert", dict(RECORDS["povwatch.alerts.HouseholdAlert"], severity="URGENT")),
])
def test_record_that_does_not_fit_is_a_schema_error(name: str, record: dict[str, Any]) -> None:
    with pytest.raises(SchemaError, match=f"^{name}: "):
        CODEC.encode(name, record)


def test_unknown_schema_name() -> None:
    with pytest.raises(SchemaError, match="unknown schema 'povwatch.events.Pharmacy'"):
        CODEC.encode("povwatch.events.Pharmacy", {})


def test_bad_schema_file_is_a_schema_error(tmp_path: Any) -> None:
    (tmp_path / "povwatch.Broken.avsc").write_text('{"type": "record", "name": "Broken", "fields": [{"name": "x"}]}')
    with pytest.raises(SchemaError, match="povwatch.Broken.avsc"):
        Codec(tmp_path)
