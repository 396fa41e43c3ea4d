"""The pseudonymisation key (issue #13, item 7): read from a file only the owner can read, named by a key_id that
every event carries, never shown; and during a rotation the roster published under both keys."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.departments.bureau import RosterSummary, load_snapshot
from connectors.pseudonym import Pseudonymiser, key_id_of, pseudonymiser_of
from plumbing.secret_file import read_secret_file
from plumbing.settings import Settings
from schemas.codec import default_codec
from schemas.errors import ConfigError
from schemas.topics import REGISTRY_HOUSEHOLDS, REGISTRY_PERSONS
from services.cli import main
from tests.unit.doubles import fixed_clock, write_csv
from tests.unit.test_framework import HEAD1, ROSTER_HEADER, SON1, WIFE1, roster_row
from tests.unit.test_roster_load import MemoryTopics

CODEC = default_codec()
OLD_KEY = "old-rotation-key-0123456789abcdef"
NEW_KEY = "new-rotation-key-fedcba9876543210"


def key_file(directory: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = directory / name
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_key_file_others_may_read_is_refused_naming_the_file(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, "pseudonym.key", NEW_KEY, mode)
    with pytest.raises(ConfigError) as refused:
        Settings(pseudonym_key_file=path).checked_key()
    message = str(refused.value)
    assert str(path) in message and f"{mode:04o}" in message and "\n" not in message
    assert NEW_KEY not in message


def test_the_key_comes_from_its_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, "pseudonym.key", NEW_KEY)
    assert Settings(pseudonym_key_file=path, mode="production").checked_key() == NEW_KEY.encode()
    with pytest.raises(ConfigError, match="not both"):
        Settings(pseudonym_key_file=path, pseudonym_key=SecretStr(OLD_KEY)).checked_key()
    with pytest.raises(ConfigError, match="is empty"):
        read_secret_file(key_file(tmp_path, "empty.key", ""), "POVWATCH_PSEUDONYM_KEY_FILE")
    with pytest.raises(ConfigError, match="cannot read"):
        read_secret_file(tmp_path / "missing.key", "POVWATCH_PSEUDONYM_KEY_FILE")


def test_the_command_line_refuses_it_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = key_file(tmp_path, "pseudonym.key", NEW_KEY, 0o644)
    monkeypatch.setenv("POVWATCH_PSEUDONYM_KEY_FILE", str(path))
    data = write_csv(tmp_path / "h.csv", [["姓名"], ["x"]])
    assert main(["connector", "run", "medical-security", "hospitalization", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and NEW_KEY not in err
    assert err.startswith(f"povwatch: error: POVWATCH_PSEUDONYM_KEY_FILE: refusing {path}")


def test_key_id_is_a_short_fingerprint_that_does_not_reveal_the_key() -> None:
    kid = key_id_of(NEW_KEY.encode())
    assert re.fullmatch(r"[0-9a-f]{8}", kid) and kid == key_id_of(NEW_KEY.encode()) != key_id_of(OLD_KEY.encode())
    assert kid == hmac.new(NEW_KEY.encode(), b"povwatch key id", hashlib.sha256).hexdigest()[:8]
    assert kid not in hashlib.sha256(NEW_KEY.encode()).hexdigest()  # not a prefix of the key's plain hash
    pseudo = Pseudonymiser(NEW_KEY.encode())
    assert pseudo.key_id == kid and repr(pseudo) == f"Pseudonymiser(key_id={kid})"


def test_the_previous_key_is_read_and_checked(tmp_path: Path) -> None:
    new, old = key_file(tmp_path, "new.key", NEW_KEY), key_file(tmp_path, "old.key", OLD_KEY)
    settings = Settings(pseudonym_key_file=new, pseudonym_previous_key_file=old)
    assert settings.previous_keys() == (OLD_KEY.encode(),)
    pseudo = pseudonymiser_of(settings)
    assert pseudo.key_id == key_id_of(NEW_KEY.encode()) and pseudo.previous_key_ids == (key_id_of(OLD_KEY.encode()),)
    assert pseudo.aliases(HEAD1) == [(key_id_of(OLD_KEY.encode()), Pseudonymiser(OLD_KEY.encode()).person_key(HEAD1))]
    with pytest.raises(ConfigError, match="nothing is being rotated"):
        Settings(pseudonym_key_file=new, pseudonym_previous_key_file=new).previous_keys()
    with pytest.raises(ConfigError, match="refusing"):
        Settings(pseudonym_key_file=new, pseudonym_previous_key_file=key_file(tmp_path, "o2.key", OLD_KEY, 0o644)
                 ).previous_keys()
    assert Settings(pseudonym_key_file=new).previous_keys() == ()


def _load(path: Path, kafka: MemoryTopics, pseudo: Pseudonymiser) -> RosterSummary:
    return asyncio.run(load_snapshot(path, pseudonymiser=pseudo, codec=CODEC, clock=fixed_clock(),
                                     read_state=kafka.read, publisher_factory=lambda: kafka))


def test_a_rotation_publishes_the_roster_under_both_keys_then_retires_the_old_one(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "roster.csv", [ROSTER_HEADER, roster_row("H1", "王建国", HEAD1, "男", "户主"),
                                               roster_row("H1", "李秀兰", WIFE1, "女", "配偶"),
                                               roster_row("H1", "王小军", SON1, "男", "子")])
    old, new = Pseudonymiser(OLD_KEY.encode()), Pseudonymiser(NEW_KEY.encode())
    kafka = MemoryTopics()
    _load(path, kafka, old)
    old_keys = {old.person_key(i).encode() for i in (HEAD1, WIFE1, SON1)}
    new_keys = {new.person_key(i).encode() for i in (HEAD1, WIFE1, SON1)}
    assert set(kafka.topics[REGISTRY_PERSONS]) == old_keys

    rotating = Pseudonymiser(NEW_KEY.encode(), [OLD_KEY.encode()])
    summary = _load(path, kafka, rotating)
    assert set(kafka.topics[REGISTRY_PERSONS]) == old_keys | new_keys  # both ids accepted during the change
    assert summary.balanced and summary.published == 3 and summary.unchanged == 0
    key_ids = {k: CODEC.decode(v).record["source"]["key_id"] for k, v in kafka.topics[REGISTRY_PERSONS].items()}
    assert {key_ids[k] for k in old_keys} == {old.key_id} and {key_ids[k] for k in new_keys} == {new.key_id}
    household = CODEC.decode(kafka.topics[REGISTRY_HOUSEHOLDS][b"H1"]).record
    assert household["head_person_key"] == new.person_key(HEAD1) and household["source"]["key_id"] == new.key_id

    summary = _load(path, kafka, new)  # the change is over: the previous key is no longer configured
    assert set(kafka.topics[REGISTRY_PERSONS]) == new_keys
    assert summary.unchanged == 3 and summary.tombstones == 3
