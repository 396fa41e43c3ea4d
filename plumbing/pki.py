"""The private certificate authority: one CA, a certificate per party, a register of what was issued.

    <dir>/ca.crt, ca.key                  the CA (key readable by its owner only; never overwritten)
    <dir>/parties/<NAME>.crt, <NAME>.key  a party's client certificate, subject CN=<NAME>,OU=<ROLE>
    <dir>/brokers/<NAME>.crt, <NAME>.key  a broker's certificate (server and client: TLS between brokers)
    <dir>/parties.json                    the register: name -> role, serial, issued, expires, revoked

    init(dir) -> message                 issue(dir, name, role, days) -> Party
    parties(dir) -> [Party]              revoke(dir, name) -> Party
    broker_certificate(dir, name) -> (certfile, keyfile), issued once

Roles are the caller's to check (services/access/roles.py knows the catalogue); this module only refuses a name
or role that cannot stand in a certificate subject the broker maps to `User:<NAME>`.
Uses the `cryptography` package (no openssl command). Every write is atomic; keys are created 0600.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from plumbing.clock import utc_now
from schemas.errors import ConfigError

__all__ = ["Party", "CA_DAYS", "init", "issue", "parties", "party", "revoke", "broker_certificate", "ca_paths",
           "party_paths", "subject_of", "NAME_PATTERN"]

CA_DAYS = 3650
BROKER_DAYS = 825
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")  # a principal name: no comma, no '=', no spaces
_ROLE_PATTERN = re.compile(r"^[a-z][a-z0-9:._-]{0,62}$")


@dataclass(frozen=True)
class Party:
    name: str
    role: str
    serial: str  # hex
    issued: str  # ISO 8601, UTC
    expires: str
    revoked: bool = False
    revoked_at: str | None = None

    @property
    def principal(self) -> str:
        return f"User:{self.name}"


def ca_paths(directory: Path) -> tuple[Path, Path]:
    return directory / "ca.crt", directory / "ca.key"


def party_paths(directory: Path, name: str) -> tuple[Path, Path]:
    return directory / "parties" / f"{name}.crt", directory / "parties" / f"{name}.key"


def _register(directory: Path) -> Path:
    return directory / "parties.json"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def subject_of(name: str, role: str) -> x509.Name:
    """CN=<name>,OU=<role> as RFC 4514 writes it (and Java's X500Principal, which the broker's mapping rule reads):
    the most specific attribute, the common name, first."""
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                      x509.NameAttribute(NameOID.COMMON_NAME, name)])


def init(directory: Path, *, now: dt.datetime | None = None) -> str:
    """Create the CA in `directory`; an existing CA is kept (never overwritten)."""
    cert_path, key_path = ca_paths(directory)
    if cert_path.exists() or key_path.exists():
        if not (cert_path.exists() and key_path.exists()):
            raise ConfigError(f"{directory} holds half a CA ({cert_path.name} or {key_path.name} is missing); "
                              "restore it from the backup, it is never recreated over")
        return f"CA already exists in {directory} (kept): {_load_cert(cert_path).subject.rfc4514_string()}"
    now = now or utc_now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "povwatch"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "povwatch private CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert))
    return f"created the CA in {directory} (valid until {cert.not_valid_after_utc:%Y-%m-%d}); keep {key_path} secret"


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a PEM certificate ({exc})") from None


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_paths(directory)
    if not cert_path.exists() or not key_path.exists():
        raise ConfigError(f"no CA in {directory}: run `povwatch pki init --dir {directory}` first")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path}: not the CA's EC key")
    return _load_cert(cert_path), key


def _sign(directory: Path, subject: x509.Name, days: int, now: dt.datetime, *, server_names: Sequence[str] = (),
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server_names else [])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if server_names:
        alt: list[x509.GeneralName] = []
        for host in server_names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _check_name(name: str, what: str = "party name") -> None:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"{what} {name!r}: use lowercase letters, digits, '.', '_' or '-' (at most 63), "
                          "starting with a letter or digit")


def parties(directory: Path) -> list[Party]:
    path = _register(directory)
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
        return [Party(**row) for row in rows]
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a register of parties ({exc})") from None


def party(directory: Path, name: str) -> Party | None:
    return next((p for p in parties(directory) if p.name == name), None)


def _save(directory: Path, rows: Sequence[Party]) -> None:
    data = json.dumps([asdict(p) for p in sorted(rows, key=lambda p: p.name)], indent=1, ensure_ascii=False)
    _write(_register(directory), (data + "\n").encode(), 0o600)


def issue(directory: Path, name: str, role: str, *, days: int = 365, now: dt.datetime | None = None) -> Party:
    """A client certificate and key for the party; refused when the name is already issued (revoked or not):
    a name is one principal, and a revoked principal stays denied."""
    _check_name(name)
    if not _ROLE_PATTERN.match(role):
        raise ConfigError(f"role {role!r} cannot stand in a certificate subject")
    if days <= 0:
        raise ConfigError(f"--days must be positive, got {days}")
    existing = party(directory, name)
    if existing is not None:
        state = "revoked" if existing.revoked else f"valid until {existing.expires[:10]}"
        raise ConfigError(f"{name} was already issued ({existing.role}, {state}); a name is issued once")
    now = now or utc_now()
    cert, key = _sign(directory, subject_of(name, role), days, now)
    cert_path, key_path = party_paths(directory, name)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert))
    made = Party(name, role, format(cert.serial_number, "x"), cert.not_valid_before_utc.isoformat(),
                 cert.not_valid_after_utc.isoformat())
    _save(directory, [*parties(directory), made])
    return made


def revoke(directory: Path, name: str, *, now: dt.datetime | None = None) -> Party:
    """Mark the party revoked in the register (the ACLs are the caller's: `acl apply` denies it)."""
    found = party(directory, name)
    if found is None:
        raise ConfigError(f"no party {name!r} was issued from {directory} (`povwatch pki list`)")
    if found.revoked:
        return found
    done = Party(found.name, found.role, found.serial, found.issued, found.expires, True,
                 (now or utc_now()).isoformat())
    _save(directory, [done if p.name == name else p for p in parties(directory)])
    return done


def broker_certificate(directory: Path, name: str, hosts: Sequence[str] = ("127.0.0.1", "localhost"),
                       *, now: dt.datetime | None = None) -> tuple[Path, Path]:
    """A broker's certificate (server and client authentication, for `hosts`), issued once and kept."""
    _check_name(name, "broker name")
    cert_path, key_path = directory / "brokers" / f"{name}.crt", directory / "brokers" / f"{name}.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    cert, key = _sign(directory, subject_of(name, "broker"), BROKER_DAYS, now or utc_now(), server_names=hosts)
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, _cert_pem(cert))
    return cert_path, key_path
