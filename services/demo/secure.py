"""`povwatch demo --secure`: the demo on a secured broker, every party on its own certificate.

The demo's CA lives in <demo dir>/pki. Each party gets the certificate of its role: `roster` for the roster load,
`department:<dept>` for each department's connector (named after the department), `monitor`, `intake`,
`casefeed`; `admin` (a super user) creates the topics and applies the ACLs derived from the roles
(services/access/grants.py). The demo ending exact proves the grants suffice; a grant missing shows as a party
refused by the broker.

    DemoParties.issue(settings) -> DemoParties     the CA and every party's certificate
    DemoParties.acting(role)                        a context: Kafka clients made inside act as that party
    DemoParties.env(role)                           the variables a child process (monitor, intake) needs
    grant(settings, parties)                        the ACLs on the broker (as admin)
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from plumbing import kafka_secure_broker, pki
from plumbing.kafka_security import PLAINTEXT, ClientSecurity, acting_as
from plumbing.settings import Settings
from schemas.catalog import departments
from services.access.cli import apply_acls, declared_parties
from services.access.grants import Names

__all__ = ["DemoParties", "grant"]

_SERVICE_ROLES = ("roster", "monitor", "intake", "casefeed")


@dataclass(frozen=True)
class DemoParties:
    """Who acts as whom in a demo run; `secure` False: everyone in plaintext (the plain demo)."""

    secure: bool
    pki_dir: Path | None = None

    @classmethod
    def issue(cls, settings: Settings) -> DemoParties:
        directory = Path(settings.pki_dir).resolve()
        pki.init(directory)
        for role in _SERVICE_ROLES:
            pki.issue(directory, role, role)
        for dept in departments():
            pki.issue(directory, dept, f"department:{dept}")
        pki.issue(directory, kafka_secure_broker.ADMIN, kafka_secure_broker.ADMIN)
        return cls(True, directory)

    def security(self, name: str) -> ClientSecurity:
        if not self.secure or self.pki_dir is None:
            return PLAINTEXT
        cert, key = pki.party_paths(self.pki_dir, name)
        return ClientSecurity("SSL", pki.ca_paths(self.pki_dir)[0], cert, key)

    @contextlib.contextmanager
    def acting(self, name: str) -> Iterator[ClientSecurity]:
        with acting_as(self.security(name)) as security:
            yield security

    def env(self, name: str) -> dict[str, str]:
        return self.security(name).env()


def grant(settings: Settings, parties: DemoParties) -> str:
    """Apply the ACLs the parties' roles allow; one line saying how many."""
    if not parties.secure or parties.pki_dir is None:
        return "plaintext broker: no ACLs"
    declared = declared_parties(parties.pki_dir, parties.pki_dir / "no-extra-parties.toml")
    names = Names(settings.monitor_app_id, settings.casefeed_group, settings.relay_group)
    with parties.acting(kafka_secure_broker.ADMIN):
        added, _removed = asyncio.run(apply_acls(settings.bootstrap, declared, names))
    return f"ACLs for {len(declared)} parties, each on its own certificate: {len(added)} granted"
