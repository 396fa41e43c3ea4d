"""The ACLs derived from the catalogue and the parties' roles (services/access/grants.py), the parties file and the
diff `acl apply` makes; docs/security.md's table is the derivation's."""
from __future__ import annotations

from pathlib import Path

import pytest

from plumbing import pki
from plumbing.kafka_acls import AclBinding
from schemas.catalog import COMPARISON_DEPARTMENTS, EVENT_FEEDS, INTAKE_CHANNELS, departments, project_topics
from schemas.errors import ConfigError
from schemas.topics import AUDIT_EVENTS
from services.access.cli import declared_parties
from services.access.grants import (
    DeclaredParty,
    Names,
    declared_acls,
    diff,
    grants_table,
    parse_role,
    revoked_denials,
    role_grants,
)

ROOT = Path(__file__).resolve().parents[2]
EVERY_ROLE = [*(f"department:{d}" for d in departments()), "roster", "monitor", "casefeed", "relay", "intake",
              "desk", "admin"]


def _allowed(grants: set[AclBinding], operation: str, topic: str) -> bool:
    return any(g.resource_type == "TOPIC" and g.permission == "ALLOW" and g.operation == operation
               and (topic == g.name if g.pattern == "LITERAL" else topic.startswith(g.name)) for g in grants)


def _writers(topic: str) -> list[str]:
    return [role for role in EVERY_ROLE if _allowed(role_grants("p", role), "WRITE", topic)]


def _readers(topic: str) -> list[str]:
    return [role for role in EVERY_ROLE if _allowed(role_grants("p", role), "READ", topic)]


@pytest.mark.parametrize("text", ["department:atlantis", "department", "departments:pboc", "root", ""])
def test_unknown_roles_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="role|department"):
        parse_role(text)


def test_every_topic_of_the_catalogue_has_its_one_writer() -> None:
    expected: dict[str, list[str]] = {
        "registry.persons": ["roster"], "registry.households": ["roster"], "registry.household-status": ["relay"],
        "alerts.household": ["monitor"], "alerts.regional": ["monitor"], "profiles.household": ["monitor"],
        "dlq.monitor": ["monitor"], "dlq.casefeed": ["casefeed"], "dlq.bureau": ["department:bureau", "roster"],
        AUDIT_EVENTS: [role for role in EVERY_ROLE if role != "admin"],  # each party its own chain
    }
    for feed in EVENT_FEEDS:
        expected[feed.topic] = [f"department:{feed.department}"]
    for channel in INTAKE_CHANNELS:
        expected[channel.topic] = ["intake"]
    for entry in COMPARISON_DEPARTMENTS:
        expected[entry.request_topic] = ["relay"]
        expected[entry.result_topic] = [f"department:{entry.department}"]
    for dept in departments():
        expected.setdefault(f"dlq.{dept}", [f"department:{dept}"])
    assert {spec.name for spec in project_topics()} == set(expected)
    assert {topic: _writers(topic) for topic in expected} == expected


def test_who_reads_what() -> None:
    assert _readers("alerts.household") == ["casefeed"]
    assert _readers("registry.persons") == ["roster", "monitor"]
    assert _readers("events.medical-security.hospitalization") == ["department:medical-security", "monitor"]
    assert _readers("events.intake.cadre-visit") == ["monitor", "casefeed", "intake"]
    assert _readers("requests.pboc.comparison") == ["department:pboc"]
    assert _readers("events.pboc.comparison-result") == ["department:pboc", "relay"]
    assert _readers(AUDIT_EVENTS) == [role for role in EVERY_ROLE if role != "admin"]  # each resumes its chain


def test_every_party_but_admin_writes_the_audit_trail() -> None:
    assert _writers(AUDIT_EVENTS) == [role for role in EVERY_ROLE if role != "admin"]


def test_groups_follow_the_settings_names() -> None:
    names = Names(monitor_app_id="m1", casefeed_group="cf", relay_group="rl")
    groups = {role: {(g.name, g.pattern) for g in role_grants("p", role, names) if g.resource_type == "GROUP"}
              for role in ("monitor", "casefeed", "relay", "department:pboc", "department:education", "intake")}
    assert groups == {"monitor": {("m1", "PREFIXED")}, "casefeed": {("cf", "PREFIXED")}, "relay": {("rl", "LITERAL")},
                      "department:pboc": {("povwatch-compare-pboc", "PREFIXED")}, "department:education": set(),
                      "intake": set()}
    assert _allowed(role_grants("p", "monitor", names), "CREATE", "m1.person-state")
    assert not _allowed(role_grants("p", "monitor", names), "CREATE", "alerts.household")


def test_a_revoked_party_is_denied_everything_and_granted_nothing() -> None:
    acls = declared_acls([DeclaredParty("old", "roster", revoked=True), DeclaredParty("new", "roster")])
    old = {b for b in acls if b.principal == "User:old"}
    assert old == revoked_denials("old") and all(b.permission == "DENY" for b in old)
    assert {b for b in acls if b.principal == "User:new"} == role_grants("new", "roster")


def test_one_name_one_role() -> None:
    with pytest.raises(ConfigError, match="declared twice"):
        declared_acls([DeclaredParty("x", "roster"), DeclaredParty("x", "monitor")])


def test_diff_adds_what_is_missing_and_removes_what_is_not_declared() -> None:
    keep, missing, stray = (AclBinding("User:a", "READ", "TOPIC", t) for t in ("k", "m", "s"))
    assert diff({keep, missing}, {keep, stray}) == ([missing], [stray])
    assert diff({keep}, {keep}) == ([], [])


def test_declared_parties_come_from_the_register_and_the_file(tmp_path: Path) -> None:
    pki.init(tmp_path / "pki")
    pki.issue(tmp_path / "pki", "pboc", "department:pboc")
    pki.issue(tmp_path / "pki", "gone", "intake")
    pki.revoke(tmp_path / "pki", "gone")
    parties_file = tmp_path / "acl.toml"
    parties_file.write_text('[[party]]\nname = "pboc-gateway"\nrole = "department:pboc"\n')
    assert declared_parties(tmp_path / "pki", parties_file) == [
        DeclaredParty("gone", "intake", True), DeclaredParty("pboc", "department:pboc"),
        DeclaredParty("pboc-gateway", "department:pboc")]
    parties_file.write_text('[[party]]\nname = "x"\nrole = "department:atlantis"\n')
    with pytest.raises(ConfigError, match="atlantis"):
        declared_parties(tmp_path / "pki", parties_file)
    parties_file.write_text('[[party]]\nname = "x"\nrole = "monitor"\ncolour = "red"\n')
    with pytest.raises(ConfigError, match="unknown key colour"):
        declared_parties(tmp_path / "pki", parties_file)


def test_the_project_s_parties_file_is_valid() -> None:
    declared_parties(ROOT / "var" / "no-such-pki", ROOT / "deploy" / "acl.toml")


def test_docs_security_md_holds_the_derived_table() -> None:
    text = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert grants_table() in text, "docs/security.md's roles table is not the derivation's: paste grants_table()"
