"""Who may do what on the broker, derived from one declaration: the topic catalogue and each party's role.

A party is a name (its certificate's CN, the principal User:<name>) and a role:

    department:<dept>  a department of the catalogue: its connectors and watch service, its comparison connector
    roster             the bureau's roster load
    monitor            the stream processor
    casefeed           alerts, profiles and cadre visits into the case DB
    relay              the case DB's outbox out (statuses, comparison requests), the comparison answers in
    intake             the intake API
    desk               the web desk (it talks to the case DB only: no topic but the audit trail)
    admin              the operator: a super user of the broker, no ACL needed

What each role is granted follows what the code does (read from the services; docs/security.md has the table,
checked against this module by tests/unit/test_access.py). READ and WRITE imply DESCRIBE in Kafka; an idempotent
producer needs WRITE on a topic only (Kafka >= 3.0, KIP-679: no IDEMPOTENT_WRITE on the cluster). A revoked
party gets no grant and a DENY of everything (topics, groups, the cluster), which wins over any ALLOW, on the
next request of a connection already open too.

    parse_role(text) -> str                           the role, checked against the catalogue (one-line error)
    role_grants(name, role, names) -> set[AclBinding] one party's
    declared_acls(parties, names) -> set[AclBinding]  every party's: what `acl apply` makes the broker hold
    diff(declared, actual) -> (add, remove)
    grants_table() -> str                             the table of docs/security.md
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from plumbing.kafka_acls import AclBinding
from schemas.catalog import (
    COMPARISON_DEPARTMENTS,
    EVENT_FEEDS,
    INTAKE_CHANNELS,
    ROSTER,
    departments,
    monitored_feeds,
)
from schemas.errors import ConfigError
from schemas.topics import (
    ALERTS_HOUSEHOLD,
    ALERTS_REGIONAL,
    AUDIT_EVENTS,
    CASEFEED_DLQ,
    MONITOR_DLQ,
    PROFILES_HOUSEHOLD,
    REGISTRY_HOUSEHOLD_STATUS,
    REGISTRY_HOUSEHOLDS,
    REGISTRY_PERSONS,
    dlq_topic,
    event_topic,
)

__all__ = ["ROLES", "Names", "DeclaredParty", "parse_role", "role_grants", "declared_acls", "diff",
           "revoked_denials", "grants_table"]

ROLES = ("department:<dept>", "roster", "monitor", "casefeed", "relay", "intake", "desk", "admin")
_PLAIN_ROLES = {"roster", "monitor", "casefeed", "relay", "intake", "desk", "admin"}


@dataclass(frozen=True)
class Names:
    """The deployment's names that are settings, not catalogue: consumer groups and the monitor's prefix."""

    monitor_app_id: str = "povwatch-monitor"
    casefeed_group: str = "povwatch-casefeed"
    relay_group: str = "povwatch-relay"


@dataclass(frozen=True)
class DeclaredParty:
    name: str
    role: str
    revoked: bool = False


def parse_role(text: str) -> str:
    """`department:<dept>` (a department of the catalogue) or one of the other roles."""
    role = text.strip()
    if role in _PLAIN_ROLES:
        return role
    kind, sep, dept = role.partition(":")
    if kind == "department" and sep:
        if dept not in departments():
            raise ConfigError(f"role {text!r}: no department {dept!r} in the catalogue "
                              f"(known: {', '.join(departments())})")
        return role
    raise ConfigError(f"unknown role {text!r}; roles: {', '.join(ROLES)}")


def _topic(principal: str, operations: Iterable[str], topic: str, pattern: str = "LITERAL") -> set[AclBinding]:
    return {AclBinding(principal, op, "TOPIC", topic, pattern) for op in operations}


def _group(principal: str, group: str, pattern: str = "LITERAL") -> AclBinding:
    return AclBinding(principal, "READ", "GROUP", group, pattern)


def role_grants(name: str, role: str, names: Names = Names()) -> set[AclBinding]:
    """What `role` allows the party `name` (admin: nothing, it is a super user)."""
    p = f"User:{name}"
    role = parse_role(role)
    if role == "admin":
        return set()
    # READ too: an audit writer resumes its chain from the topic's tail after a restart (plumbing/audit.py), and
    # an ACL cannot narrow a read to one's own key
    out = _topic(p, ["WRITE", "READ"], AUDIT_EVENTS)  # its audit chain: written, and read back to resume it
    if role.startswith("department:"):
        dept = role.split(":", 1)[1]
        # its feeds and its comparison answers (events.<dept>.comparison-result) under one prefix; READ as well:
        # the watch service reads back what it published to restore its checkpoint after a crash
        out |= _topic(p, ["WRITE", "READ"], event_topic(dept, ""), "PREFIXED")
        out |= _topic(p, ["WRITE", "READ"], dlq_topic(dept))
        for entry in COMPARISON_DEPARTMENTS:
            if entry.department == dept:
                out |= _topic(p, ["READ"], entry.request_topic)
                out.add(_group(p, f"povwatch-compare-{dept}", "PREFIXED"))
    elif role == "roster":
        for topic in (REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS):  # READ: the snapshot load compares with them
            out |= _topic(p, ["WRITE", "READ"], topic)
        out |= _topic(p, ["WRITE"], ROSTER.dlq)
    elif role == "monitor":
        for topic in sorted({f.topic for f in (*monitored_feeds(), *EVENT_FEEDS)}
                            | {REGISTRY_PERSONS, REGISTRY_HOUSEHOLDS, REGISTRY_HOUSEHOLD_STATUS}):
            out |= _topic(p, ["READ"], topic)
        for topic in (ALERTS_HOUSEHOLD, ALERTS_REGIONAL, PROFILES_HOUSEHOLD, MONITOR_DLQ):
            out |= _topic(p, ["WRITE"], topic)
        # its own topics (stage inputs, state changelogs, unmatched), created by itself, and its consumer groups
        out |= _topic(p, ["READ", "WRITE", "CREATE"], f"{names.monitor_app_id}.", "PREFIXED")
        out.add(_group(p, names.monitor_app_id, "PREFIXED"))
    elif role == "casefeed":
        screening = next(c.topic for c in INTAKE_CHANNELS if c.feed == "cadre-visit")
        for topic in (ALERTS_HOUSEHOLD, ALERTS_REGIONAL, PROFILES_HOUSEHOLD, screening):
            out |= _topic(p, ["READ"], topic)
        out |= _topic(p, ["WRITE"], CASEFEED_DLQ)
        out.add(_group(p, names.casefeed_group, "PREFIXED"))  # <group>, <group>.profiles, <group>.screening
    elif role == "relay":
        out |= _topic(p, ["WRITE"], REGISTRY_HOUSEHOLD_STATUS)
        for entry in COMPARISON_DEPARTMENTS:
            out |= _topic(p, ["WRITE"], entry.request_topic)
            out |= _topic(p, ["READ"], entry.result_topic)
        out.add(_group(p, names.relay_group))
    elif role == "intake":
        # READ: on start it reads its channels back to answer a replayed request with the event it published
        out |= _topic(p, ["WRITE", "READ"], event_topic("intake", ""), "PREFIXED")
    return out


def revoked_denials(name: str) -> set[AclBinding]:
    """Everything denied to a revoked party: DENY wins over any ALLOW, effective at its next request."""
    p = f"User:{name}"
    return {AclBinding(p, "ALL", "TOPIC", "*", "LITERAL", "DENY"),
            AclBinding(p, "ALL", "GROUP", "*", "LITERAL", "DENY"),
            AclBinding(p, "ALL", "TRANSACTIONAL_ID", "*", "LITERAL", "DENY"),
            AclBinding(p, "ALL", "CLUSTER", "kafka-cluster", "LITERAL", "DENY")}


def declared_acls(parties: Iterable[DeclaredParty], names: Names = Names()) -> set[AclBinding]:
    """Every ACL the broker should hold: each party's grants, or the denials of a revoked one. A name declared
    twice with two roles is refused (one principal, one role)."""
    seen: dict[str, DeclaredParty] = {}
    out: set[AclBinding] = set()
    for party in parties:
        earlier = seen.get(party.name)
        if earlier is not None and earlier.role != party.role:
            raise ConfigError(f"party {party.name!r} is declared twice, as {earlier.role} and as {party.role}")
        if earlier is not None and earlier.revoked:
            continue
        seen[party.name] = party
    for party in seen.values():
        out |= revoked_denials(party.name) if party.revoked else role_grants(party.name, party.role, names)
    return out


def diff(declared: set[AclBinding], actual: set[AclBinding]) -> tuple[list[AclBinding], list[AclBinding]]:
    """(to add, to remove), sorted, so that the broker holds exactly `declared`."""
    return sorted(declared - actual), sorted(actual - declared)


def grants_table(names: Names = Names(), example_departments: tuple[str, ...] = ("public-security", "education")
                 ) -> str:
    """The roles and their grants as a Markdown table (docs/security.md holds it; a test checks it is current):
    one row per role and operation, the resources joined; a name ending in `*` is a prefix."""
    roles = [*(f"department:{d}" for d in example_departments), "roster", "monitor", "casefeed", "relay", "intake",
             "desk", "admin"]
    lines = ["| role | operation | resources |", "| --- | --- | --- |"]
    for role in roles:
        grants = role_grants("NAME", role, names)
        if not grants:
            lines.append(f"| `{role}` | (super user) | everything; no ACL needed |")
            continue
        for operation in ("WRITE", "READ", "CREATE"):
            chosen = sorted(g for g in grants if g.operation == operation)
            if not chosen:
                continue
            shown = ", ".join(f"{'group ' if g.resource_type == 'GROUP' else ''}`{g.name}"
                              f"{'*' if g.pattern == 'PREFIXED' else ''}`" for g in chosen)
            lines.append(f"| `{role}` | {operation} | {shown} |")
    return "\n".join(lines) + "\n"
