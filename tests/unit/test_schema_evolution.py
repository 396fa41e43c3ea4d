"""Schema evolution stays backward compatible, transitively: every released snapshot's data reads with the
current schemas, the codec accepts old writer fingerprints, and incompatible edits are caught."""
from __future__ import annotations

import datetime as dt
import io
import json
import random
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.schema import fingerprint, load_schema, parse_schema, to_parsing_canonical_form
from fastavro.utils import generate_many

from schemas.codec import AVRO_DIR, MAGIC, Codec, default_codec, expanded_schema
from schemas.release import check_compatibility, current_names, release, snapshots

HOSP = "povwatch.events.Hospitalization"
NOW = dt.datetime(2024, 7, 1, 9, 30, tzinfo=dt.UTC)
HOSP_RECORD = {
    "event_id": "a" * 32, "person_key": "k" * 64, "occurred_at": dt.date(2024, 3, 5), "ingested_at": NOW,
    "source": {"department": "medical-security", "feed": "hospitalization", "origin": "h.csv", "row": 2,
               "connector_version": "0.1.0", "key_id": ""},
    "disease": "脑梗死", "admission_date": dt.date(2024, 3, 5), "days": 12, "total_cost": Decimal("38200.00"),
    "out_of_pocket": Decimal("14500.00"), "settlement_date": dt.date(2024, 3, 18),
}


def released(name: str) -> list[int]:
    """The versions of `name` released in the repository (Source's key_id made v2 of every event schema)."""
    return [v for v, _ in snapshots(name)]


def single_object(schema: Any, record: Any) -> bytes:
    """Single-object encoding done by hand with fastavro (the snapshot as writer schema)."""
    buf = io.BytesIO()
    buf.write(MAGIC)
    buf.write(bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO")))
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


@pytest.fixture
def avro_copy(tmp_path: Path) -> Path:
    target = tmp_path / "avro"
    shutil.copytree(AVRO_DIR, target)
    return target


def edit(directory: Path, name: str, change: Any) -> None:
    path = directory / f"{name}.avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    change(schema)
    path.write_text(json.dumps(schema, ensure_ascii=False), encoding="utf-8")


def field_of(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["name"] == name)


# --- the repository's schemas ----------------------------------------------------------------------------------


def test_every_current_schema_is_released() -> None:
    names = current_names()
    assert "povwatch.events.Hospitalization" in names
    for name in names:
        released = snapshots(name)
        assert released, f"{name} has no released snapshot; run python -m schemas.release"
        newest = json.loads(released[-1][1].read_text(encoding="utf-8"))
        assert newest == expanded_schema(name), f"{name} changed since its last release; run python -m schemas.release"


def test_repository_schemas_are_compatible() -> None:
    assert check_compatibility() == []


def test_release_is_a_no_op_on_the_repository(avro_copy: Path) -> None:
    assert release(avro_copy) == []


@pytest.mark.parametrize("name", current_names())
def test_every_snapshot_decodes_through_the_codec(name: str) -> None:
    codec = default_codec()
    reader = load_schema(str(AVRO_DIR / f"{name}.avsc"))
    for version, path in snapshots(name):
        writer = parse_schema(json.loads(path.read_text(encoding="utf-8")))
        state = random.getstate()
        random.seed(version)
        try:
            samples = list(generate_many(writer, 10))
        finally:
            random.setstate(state)
        if not isinstance(samples[0], dict):
            continue  # a bare enum is never a message on its own
        for sample in samples:
            data = single_object(writer, sample)
            decoded = codec.decode(data)
            assert decoded.name == name
            expected = fastavro.schemaless_reader(io.BytesIO(data[10:]), writer, reader)
            assert decoded.record == expected


def test_snapshots_keep_logical_types() -> None:
    snapshot = json.loads(snapshots(HOSP)[0][1].read_text(encoding="utf-8"))
    assert field_of(snapshot, "admission_date")["type"] == {"type": "int", "logicalType": "date"}
    assert field_of(snapshot, "out_of_pocket")["type"]["logicalType"] == "decimal"


# --- evolving a copy -------------------------------------------------------------------------------------------


def test_optional_field_with_default_is_compatible_and_released_as_v2(avro_copy: Path) -> None:
    old_data = Codec(avro_copy).encode(HOSP, HOSP_RECORD)  # written before the change, with v1

    edit(avro_copy, HOSP, lambda s: s["fields"].append(
        {"name": "hospital", "type": ["null", "string"], "default": None, "doc": "医院名称"}))

    assert check_compatibility(avro_copy) == []
    written = release(avro_copy)
    after = released(HOSP)[-1] + 1
    assert written == [avro_copy / "released" / HOSP / f"v{after}.avsc"]
    assert [v for v, _ in snapshots(HOSP, avro_copy)] == [*released(HOSP), after]
    assert release(avro_copy) == []  # nothing more to release
    assert check_compatibility(avro_copy) == []  # v1 and v2 both read with the current schema

    codec = Codec(avro_copy)
    assert codec.fingerprint(HOSP) != old_data[2:10]
    old = codec.decode(old_data, expect=HOSP).record
    assert old == {**HOSP_RECORD, "hospital": None}  # logical types intact: dates and decimals, not ints/bytes
    new_record = {**HOSP_RECORD, "hospital": "博乐市人民医院"}
    assert codec.decode(codec.encode(HOSP, new_record)).record == new_record


def test_from_scratch_release_then_evolve_keeps_old_data_typed(avro_copy: Path) -> None:
    shutil.rmtree(avro_copy / "released")
    assert len(release(avro_copy)) == len(current_names(avro_copy))  # v1 of everything
    old_data = Codec(avro_copy).encode(HOSP, HOSP_RECORD)
    edit(avro_copy, HOSP, lambda s: field_of(s, "days").update(type="long"))
    assert release(avro_copy) == [avro_copy / "released" / HOSP / "v2.avsc"]
    old = Codec(avro_copy).decode(old_data).record
    assert old["admission_date"] == dt.date(2024, 3, 5) and old["out_of_pocket"] == Decimal("14500.00")
    assert old["ingested_at"] == NOW
    assert old == HOSP_RECORD


def test_docs_alone_do_not_make_a_release(avro_copy: Path) -> None:
    edit(avro_copy, HOSP, lambda s: s.update(doc="住院 (reworded)"))
    assert release(avro_copy) == []


def test_a_new_schema_is_released_as_v1(avro_copy: Path) -> None:
    (avro_copy / "povwatch.events.Pharmacy.avsc").write_text(json.dumps(
        {"type": "record", "name": "Pharmacy", "namespace": "povwatch.events",
         "fields": [{"name": "event_id", "type": "string"}, {"name": "source", "type": "povwatch.Source"}]}))
    assert release(avro_copy) == [avro_copy / "released" / "povwatch.events.Pharmacy" / "v1.avsc"]
    snapshot = json.loads((avro_copy / "released" / "povwatch.events.Pharmacy" / "v1.avsc").read_text())
    assert field_of(snapshot, "source")["type"]["name"] == "povwatch.Source"  # expanded, not a reference


def test_int_widened_to_long_is_compatible(avro_copy: Path) -> None:
    edit(avro_copy, HOSP, lambda s: field_of(s, "days").update(type="long"))
    assert check_compatibility(avro_copy) == []


def test_required_field_without_default_is_reported(avro_copy: Path) -> None:
    edit(avro_copy, HOSP, lambda s: s["fields"].append({"name": "hospital", "type": "string"}))
    problems = check_compatibility(avro_copy)
    assert len(problems) == len(released(HOSP))  # every released version's data
    assert problems[0].startswith(f"{HOSP} v1: data cannot be read with the current schema")
    assert all("hospital" in problem for problem in problems)


def test_incompatible_type_change_is_reported(avro_copy: Path) -> None:
    edit(avro_copy, HOSP, lambda s: field_of(s, "disease").update(type="int"))
    problems = check_compatibility(avro_copy)
    assert [p.split(":")[0] for p in problems] == [f"{HOSP} v{v}" for v in released(HOSP)]


def test_removed_enum_symbol_is_reported(avro_copy: Path) -> None:
    def drop_other(schema: dict[str, Any]) -> None:
        enum = field_of(schema, "disaster_type")["type"]
        enum["symbols"] = [s for s in enum["symbols"] if s != "OTHER"]

    edit(avro_copy, "povwatch.events.DisasterLoss", drop_other)
    problems = check_compatibility(avro_copy)
    assert [p.split(":")[0] for p in problems] == [f"povwatch.events.DisasterLoss v{v}"
                                                   for v in released("povwatch.events.DisasterLoss")]


def test_a_change_in_a_shared_type_is_reported_for_every_schema_using_it(avro_copy: Path) -> None:
    edit(avro_copy, "povwatch.Source", lambda s: s["fields"].append({"name": "checksum", "type": "string"}))
    problems = {p.split(":")[0] for p in check_compatibility(avro_copy)}
    assert {"povwatch.Source v1", "povwatch.DeadLetter v1", f"{HOSP} v1", "povwatch.registry.Person v1",
            "povwatch.monitor.EnrichedEvent v1"} <= problems
    assert "povwatch.monitor.VillageDisaster v1" not in problems


def test_transitive_an_older_version_is_still_checked(avro_copy: Path) -> None:
    # the next version drops `disease` (older data still reads: the extra field is skipped) ...
    edit(avro_copy, HOSP, lambda s: s["fields"].remove(field_of(s, "disease")))
    assert check_compatibility(avro_copy) == []
    dropped = released(HOSP)[-1] + 1
    assert release(avro_copy) == [avro_copy / "released" / HOSP / f"v{dropped}.avsc"]
    # ... then `disease` comes back as an int with a default: fine for the newest data (the default fills it), but
    # older data holds a string there. Only a check against every version, not just the newest, sees it.
    edit(avro_copy, HOSP, lambda s: s["fields"].append({"name": "disease", "type": "int", "default": 0}))
    problems = check_compatibility(avro_copy)
    assert [p.split(":")[0] for p in problems] == [f"{HOSP} v{v}" for v in released(HOSP)]


def test_removed_schema_is_reported(avro_copy: Path) -> None:
    (avro_copy / "povwatch.monitor.Unmatched.avsc").unlink()
    assert check_compatibility(avro_copy) == [
        "povwatch.monitor.Unmatched: released, but the current schema file is gone"]
