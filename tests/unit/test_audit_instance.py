"""Claiming an audit instance (plumbing/audit_instance.py): the first free of `<host>`, `<host>-2`, ...; an explicit
one refused in one line while another process holds it; a released or dead holder's instance taken back."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plumbing.audit import party_of
from plumbing.audit_instance import claim_instance, default_instance, lock_path
from plumbing.settings import Settings
from schemas.errors import ConfigError

HOLD = """
import sys
from pathlib import Path
from plumbing.audit_instance import claim_instance
claim = claim_instance(Path(sys.argv[1]), sys.argv[2], sys.argv[3] or None)
print(claim.instance, flush=True)
sys.stdin.readline()
"""


def test_a_second_claim_of_one_party_gets_the_next_instance_and_a_release_gives_it_back(tmp_path: Path) -> None:
    host = default_instance()
    first = claim_instance(tmp_path, "monitor")
    second = claim_instance(tmp_path, "monitor")
    third = claim_instance(tmp_path, "monitor")
    other_party = claim_instance(tmp_path, "intake")
    assert (first.instance, second.instance, third.instance) == (host, f"{host}-2", f"{host}-3")
    assert other_party.instance == host  # one chain per (party, instance): parties do not compete
    second.release()
    assert not second.held
    again = claim_instance(tmp_path, "monitor")  # a restarted second worker: its own chain again
    assert again.instance == f"{host}-2"
    for claim in (first, third, other_party, again):
        claim.release()


def test_an_explicit_instance_held_elsewhere_is_refused_in_one_line_naming_it(tmp_path: Path) -> None:
    held = claim_instance(tmp_path, "monitor", "worker-a")
    assert held.instance == "worker-a"
    with pytest.raises(ConfigError) as refused:
        claim_instance(tmp_path, "monitor", "worker-a")
    message = str(refused.value)
    assert "\n" not in message
    assert "POVWATCH_AUDIT_INSTANCE=worker-a" in message and "monitor" in message
    assert claim_instance(tmp_path, "intake", "worker-a").held  # another party's chain: free
    held.release()
    assert claim_instance(tmp_path, "monitor", "worker-a").instance == "worker-a"


def test_a_claim_held_by_another_process_counts_and_ends_with_it(tmp_path: Path) -> None:
    host = default_instance()
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), "monitor", ""], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == host  # it holds <host> now
        mine = claim_instance(tmp_path, "monitor")
        assert mine.instance == f"{host}-2"
        with pytest.raises(ConfigError, match=r"\(pid \d+\)"):
            claim_instance(tmp_path, "monitor", host)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
        assert claim_instance(tmp_path, "monitor").instance == host  # the process ended: its lock went with it
        mine.release()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_an_unusable_run_dir_is_one_line_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot claim an audit instance in .*not-a-dir"):
        claim_instance(blocker / "run", "monitor")


def test_lock_files_are_named_by_party_and_instance_with_unsafe_characters_replaced(tmp_path: Path) -> None:
    assert lock_path(tmp_path, "connector.medical-security", "host/1 a").name == \
        "audit-connector.medical-security@host_1_a.lock"


def test_party_of_reads_the_settings_and_leaves_the_instance_to_the_claim(tmp_path: Path) -> None:
    writer = party_of(Settings(run_dir=tmp_path / "run"), "monitor")  # type: ignore[call-arg]
    assert (writer.party, writer.instance, writer.run_dir) == ("monitor", None, tmp_path / "run")
    explicit = party_of(Settings(party="monitor-b", audit_instance="w1", run_dir=tmp_path), "monitor")  # type: ignore[call-arg]
    assert (explicit.party, explicit.instance) == ("monitor-b", "w1")
