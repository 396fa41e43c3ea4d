"""The secured local broker (`povwatch kafka up --secure`): TLS listeners with required client certificates,
the StandardAuthorizer, `admin` the only super user besides the brokers themselves (docs/security.md).

plumbing/kafka_local.py renders the plain server.properties of a broker; `secure_properties` turns it into the
secured one, whatever the number of brokers and listeners:

  * every listener speaks SSL (the client listener, renamed SSL, and CONTROLLER): no plaintext port at all.
    The brokers' and controllers' own traffic is on TLS too, each authenticated by its broker certificate
    (principal User:<broker name>, a super user: brokers must replicate and register whatever the ACLs say);
  * `ssl.client.auth=required`, truststore = the private CA only;
  * `ssl.principal.mapping.rules`: CN=<NAME>,OU=<ROLE> -> User:<NAME>;
  * `authorizer.class.name` = StandardAuthorizer (KRaft's), `super.users=User:admin;User:<brokers>`,
    `allow.everyone.if.no.acl.found=false`: what no ACL allows is refused.

    secure_properties(plain, tls) -> text          pure
    broker_tls(pki_dir, name) -> BrokerTls         the broker's certificate (issued once) and PEM keystore
    admin_security(settings) -> ClientSecurity     who `kafka up --secure` probes the broker as
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from plumbing import pki
from plumbing.kafka_security import ClientSecurity

if TYPE_CHECKING:
    from plumbing.settings import Settings

__all__ = ["BrokerTls", "secure_properties", "broker_tls", "admin_security", "is_secure", "PRINCIPAL_RULE",
           "ADMIN", "AUTHORIZER"]

ADMIN = "admin"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# Java writes the subject as RFC 2253 does: CN first (pki.subject_of). Anything else keeps its whole DN as the
# principal name, which no ACL names: refused.
PRINCIPAL_RULE = r"RULE:^CN=([^,]+),OU=[^,]+$/$1/,DEFAULT"


@dataclass(frozen=True)
class BrokerTls:
    name: str  # the broker's principal name (User:<name>)
    cafile: Path
    keystore: Path  # the broker's key and certificate in one PEM file (ssl.keystore.type=PEM)


def _listener_line(line: str) -> str:
    key, _, value = line.partition("=")
    if key in ("listeners", "advertised.listeners"):
        return key + "=" + re.sub(r"\bPLAINTEXT://", "SSL://", value)
    if key == "listener.security.protocol.map":
        pairs = [pair.split(":", 1) for pair in value.split(",") if pair]
        return f"{key}=" + ",".join(f"{'SSL' if n == 'PLAINTEXT' else n}:SSL" for n, _ in pairs)
    return line


def secure_properties(plain: str, tls: BrokerTls, brokers: Sequence[str] = ()) -> str:
    """The secured server.properties from the plain one: every listener on SSL, the authorizer and the TLS files.
    `brokers`: every broker's principal name of the cluster (default: this one's)."""
    lines = [_listener_line(line) for line in plain.splitlines()
             if not line.startswith(("inter.broker.listener.name=", "security.inter.broker.protocol="))]
    supers = ";".join(f"User:{name}" for name in (ADMIN, *(brokers or (tls.name,))))
    lines += [
        "inter.broker.listener.name=SSL",
        "ssl.client.auth=required",
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={tls.cafile}",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={tls.keystore}",
        "ssl.endpoint.identification.algorithm=https",
        f"ssl.principal.mapping.rules={PRINCIPAL_RULE}",
        f"authorizer.class.name={AUTHORIZER}",
        f"super.users={supers}",
        "allow.everyone.if.no.acl.found=false",
    ]
    return "\n".join(lines) + "\n"


def is_secure(properties: str) -> bool:
    return "ssl.client.auth=required" in properties.splitlines()


def broker_tls(pki_dir: Path, name: str) -> BrokerTls:
    """The broker's certificate for 127.0.0.1/localhost, issued from the CA once, and its PEM keystore."""
    certfile, keyfile = pki.broker_certificate(pki_dir, name)
    keystore = certfile.with_suffix(".keystore.pem")
    text = keyfile.read_text() + certfile.read_text()
    if not keystore.exists() or keystore.read_text() != text:
        keystore.touch(mode=0o600)
        keystore.write_text(text)
    return BrokerTls(name, pki.ca_paths(pki_dir)[0].resolve(), keystore.resolve())


def admin_security(settings: Settings) -> ClientSecurity:
    """The settings' own certificate when they name one (an operator's admin certificate); else the `admin`
    party of the CA in POVWATCH_PKI_DIR, issued on first use."""
    if settings.security_protocol == "SSL":
        return ClientSecurity.from_settings(settings)
    pki_dir = Path(settings.pki_dir).resolve()
    certfile, keyfile = pki.party_paths(pki_dir, ADMIN)
    if pki.party(pki_dir, ADMIN) is None:
        pki.issue(pki_dir, ADMIN, ADMIN)
    return ClientSecurity("SSL", pki.ca_paths(pki_dir)[0], certfile, keyfile)
