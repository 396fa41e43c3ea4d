"""`povwatch pki init|issue|list|revoke` and `povwatch acl apply|list` (docs/security.md).

The parties are those `pki issue` recorded in POVWATCH_PKI_DIR/parties.json, and those a small TOML file
(`--parties`, default deploy/acl.toml) declares by name and role, whose certificates come from elsewhere:

    [[party]]
    name = "pboc-gateway"
    role = "department:pboc"

`acl apply` makes the broker's ACLs equal to what their roles allow (services/access/grants.py): adds what is
missing, removes what is not declared, prints both. The ACL commands act as the admin: the settings' certificate
when POVWATCH_SECURITY_PROTOCOL=SSL, else the `admin` party of the CA in POVWATCH_PKI_DIR.
"""
from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from plumbing import kafka_acls, kafka_secure_broker, kafka_security, pki
from plumbing.clock import utc_now
from plumbing.settings import Settings
from plumbing.table import render_table
from plumbing.toml_config import TomlTable, read_toml
from schemas.errors import BrokerUnavailable, ConfigError
from services.access.grants import ROLES, DeclaredParty, Names, declared_acls, diff, parse_role

__all__ = ["add_commands", "declared_parties", "apply_acls", "DEFAULT_PARTIES_FILE"]

DEFAULT_PARTIES_FILE = Path("deploy") / "acl.toml"


def _file_parties(path: Path) -> list[DeclaredParty]:
    if not path.exists():
        return []
    data = TomlTable(read_toml(path), path.name)
    rows = data.get("party", list, [])
    data.done()
    out = []
    for n, row in enumerate(rows, 1):
        table = TomlTable(row, f"{path.name} party {n}")
        name = table.get("name", str, required=True)
        role = parse_role(table.get("role", str, required=True))
        revoked = table.get("revoked", bool, False)
        table.done()
        if not pki.NAME_PATTERN.match(name):
            raise ConfigError(f"{path.name} party {n}: name {name!r} is not a principal name")
        out.append(DeclaredParty(name, role, revoked))
    return out


def declared_parties(pki_dir: Path, parties_file: Path) -> list[DeclaredParty]:
    """The register's parties (with their revocation) and the file's."""
    issued = [DeclaredParty(p.name, p.role, p.revoked) for p in pki.parties(pki_dir)]
    return issued + _file_parties(parties_file)


def _names(settings: Settings) -> Names:
    return Names(settings.monitor_app_id, settings.casefeed_group, settings.relay_group)


async def apply_acls(bootstrap: str, parties: list[DeclaredParty], names: Names
                     ) -> tuple[list[kafka_acls.AclBinding], list[kafka_acls.AclBinding]]:
    """Make the broker hold exactly the declared ACLs; returns (added, removed). Denials are added before any
    grant is removed, so a revoked party never passes through a moment with neither."""
    declared = declared_acls(parties, names)
    add, remove = diff(declared, await kafka_acls.describe_acls(bootstrap))
    await kafka_acls.create_acls(bootstrap, sorted(add, key=lambda b: b.permission != "DENY"))
    await kafka_acls.delete_acls(bootstrap, remove)
    await kafka_acls.wait_for_acls(bootstrap, declared)  # in force when this returns
    return add, remove


def _apply_and_print(settings: Settings, parties_file: Path) -> None:
    parties = declared_parties(Path(settings.pki_dir), parties_file)
    with kafka_security.acting_as(kafka_secure_broker.admin_security(settings)):
        added, removed = asyncio.run(apply_acls(settings.bootstrap, parties, _names(settings)))
    for binding in added:
        print(f"added    {binding.describe()}")
    for binding in removed:
        print(f"removed  {binding.describe()}")
    print(f"ACLs on {settings.bootstrap}: {len(added)} added, {len(removed)} removed, for "
          f"{len({p.name for p in parties})} parties")


def cmd_pki(args: argparse.Namespace, settings: Settings) -> int:
    directory = Path(args.dir or settings.pki_dir)
    if args.action == "init":
        print(pki.init(directory))
    elif args.action == "issue":
        role = parse_role(args.role)
        party = pki.issue(directory, args.name, role, days=args.days)
        cert, key = pki.party_paths(directory, party.name)
        print(f"issued {party.name} ({party.role}), serial {party.serial}, valid until {party.expires[:10]}: "
              f"{cert}, {key} (`povwatch acl apply` grants its role)")
    elif args.action == "list":
        rows = pki.parties(directory)
        if args.json:
            print(json.dumps([asdict(p) for p in rows], ensure_ascii=False))
            return 0
        now = utc_now().isoformat()
        body = [[p.name, p.role, p.issued[:10], p.expires[:10],
                 "revoked " + (p.revoked_at or "")[:10] if p.revoked else ("EXPIRED" if p.expires < now else "valid")]
                for p in rows]
        print(render_table(["name", "role", "issued", "expires", "state"], body))
    elif args.action == "revoke":
        party = pki.revoke(directory, args.name)
        print(f"revoked {party.name} ({party.role}) in {directory}")
        if not args.no_apply:
            try:
                _apply_and_print(settings.model_copy(update={"pki_dir": directory}), Path(args.parties))
            except BrokerUnavailable as exc:
                raise BrokerUnavailable(f"{party.name} is recorded revoked but the broker does not deny it yet: "
                                        f"{exc}; run `povwatch acl apply` as soon as it answers") from None
    return 0


def cmd_acl(args: argparse.Namespace, settings: Settings) -> int:
    parties_file = Path(args.parties)
    if args.action == "apply":
        _apply_and_print(settings, parties_file)
        return 0
    declared = declared_acls(declared_parties(Path(settings.pki_dir), parties_file), _names(settings))
    with kafka_security.acting_as(kafka_secure_broker.admin_security(settings)):
        actual = asyncio.run(kafka_acls.describe_acls(settings.bootstrap))
    rows: list[dict[str, Any]] = [{**asdict(b), "declared": b in declared} for b in sorted(actual)]
    if args.json:
        print(json.dumps(rows))
        return 0
    body = [[b.principal, b.permission, b.operation, b.resource_type, b.name, b.pattern,
             "yes" if b in declared else "NO"] for b in sorted(actual)]
    print(render_table(["principal", "permission", "operation", "resource", "name", "pattern", "declared"], body))
    missing = len(declared - actual)
    print(f"{len(actual)} ACLs on {settings.bootstrap}; declared but missing: {missing}"
          + (" (`povwatch acl apply`)" if missing else ""))
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("pki", help="the private CA: a certificate per party (docs/security.md)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("init", help="create the CA (kept if it exists)")
    a.add_argument("--dir", help="where (default POVWATCH_PKI_DIR, var/pki)")
    a = actions.add_parser("issue", help="issue a client certificate and key for a party")
    a.add_argument("name", help="the party's name: its principal User:<NAME>")
    a.add_argument("--role", required=True, help="one of " + ", ".join(ROLES))
    a.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    a.add_argument("--dir", help="the CA's directory (default POVWATCH_PKI_DIR)")
    a = actions.add_parser("list", help="what was issued, when it expires, what was revoked")
    a.add_argument("--dir", help="the CA's directory (default POVWATCH_PKI_DIR)")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("revoke", help="withdraw a party: its ACLs removed and everything denied, at once")
    a.add_argument("name")
    a.add_argument("--dir", help="the CA's directory (default POVWATCH_PKI_DIR)")
    a.add_argument("--parties", default=str(DEFAULT_PARTIES_FILE), help="the parties file (default deploy/acl.toml)")
    a.add_argument("--no-apply", action="store_true", help="only mark it revoked; `acl apply` later")
    p.set_defaults(func=cmd_pki)

    p = sub.add_parser("acl", help="the broker's ACLs from the parties' roles (docs/security.md)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("apply", "make the broker's ACLs equal to the declaration; prints what changed"),
                         ("list", "the broker's ACLs, each marked declared or not")):
        a = actions.add_parser(action, help=text)
        a.add_argument("--parties", default=str(DEFAULT_PARTIES_FILE),
                       help="the parties file (default deploy/acl.toml)")
        if action == "list":
            a.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_acl)
