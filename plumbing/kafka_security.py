"""How clients reach Kafka: plaintext on the local broker, or TLS with a client certificate (docs/security.md).

The one place that builds the security options of every Kafka client of the project (aiokafka producers,
consumers and admin clients) and of Kafka's command-line tools (a client properties file).

    ClientSecurity                  protocol, CA file, certificate and key of one party
    ClientSecurity.from_settings()  POVWATCH_SECURITY_PROTOCOL, POVWATCH_SSL_CAFILE/CERTFILE/KEYFILE
    configure(settings)             the process's security (the command line calls it once, with the settings)
    acting_as(security)             a block of code (and the tasks it starts) acting as another party: the demo
                                    runs the roster, every department's connector and the case feed in one process,
                                    each with its own certificate
    client_options()                keyword arguments for AIOKafkaProducer/Consumer/AdminClient: {} in plaintext,
                                    security_protocol="SSL" and an ssl.SSLContext with the party's certificate
    tool_properties(security)       the same for Kafka's Java tools (PEM truststore and keystore)
    from_toml(kafka_table, base)    a connector's own certificate, named in its TOML file's [kafka] table:
                                    cafile, certfile, keyfile (relative to the file): SSL as that party

A missing or unusable file is a ConfigError naming it (one line), never a traceback from the ssl module.
When nothing called `configure`, the security comes from the environment (`load_settings`), so a library call
made outside the command line (a test, a bench) follows the same variables.
"""
from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from plumbing import aiokafka_fixes
from schemas.errors import ConfigError

if TYPE_CHECKING:
    from plumbing.settings import Settings
    from plumbing.toml_config import TomlTable

__all__ = ["ClientSecurity", "PLAINTEXT", "configure", "acting_as", "current", "client_options", "tool_properties",
           "ssl_context", "from_toml"]

Protocol = Literal["PLAINTEXT", "SSL"]


@dataclass(frozen=True)
class ClientSecurity:
    protocol: Protocol = "PLAINTEXT"
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientSecurity:
        return cls(settings.security_protocol, settings.ssl_cafile, settings.ssl_certfile, settings.ssl_keyfile)

    @property
    def secure(self) -> bool:
        return self.protocol == "SSL"

    def as_party(self, certfile: Path, keyfile: Path) -> ClientSecurity:
        """The same CA, another party's certificate and key."""
        return replace(self, certfile=certfile, keyfile=keyfile)

    def env(self) -> dict[str, str]:
        """The POVWATCH_* variables a child process needs to act as this party."""
        if not self.secure:
            return {"POVWATCH_SECURITY_PROTOCOL": "PLAINTEXT"}
        return {"POVWATCH_SECURITY_PROTOCOL": "SSL", "POVWATCH_SSL_CAFILE": str(self.cafile or ""),
                "POVWATCH_SSL_CERTFILE": str(self.certfile or ""), "POVWATCH_SSL_KEYFILE": str(self.keyfile or "")}


PLAINTEXT = ClientSecurity()

_process: list[ClientSecurity] = []  # set by configure(); empty: read from the environment on first use
_acting: ContextVar[ClientSecurity | None] = ContextVar("povwatch_kafka_security", default=None)


def configure(settings: Settings) -> ClientSecurity:
    """Make the settings' security the process's; checks the files now (a bad file fails at start, one line)."""
    security = ClientSecurity.from_settings(settings)
    if security.secure:
        ssl_context(security)
    _process[:] = [security]
    return security


@contextlib.contextmanager
def acting_as(security: ClientSecurity) -> Iterator[ClientSecurity]:
    """Within the block (and in the asyncio tasks created in it), clients use `security`."""
    token = _acting.set(security)
    try:
        yield security
    finally:
        _acting.reset(token)


def current() -> ClientSecurity:
    acting = _acting.get()
    if acting is not None:
        return acting
    if not _process:
        from plumbing.settings import load_settings

        _process.append(ClientSecurity.from_settings(load_settings()))
    return _process[0]


def client_options(security: ClientSecurity | None = None) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client: the current party's unless `security` is given."""
    aiokafka_fixes.apply()  # every client is made with these options: the consumer's stale-leader fix is in place
    security = security or current()
    if not security.secure:
        return {}
    return {"security_protocol": "SSL", "ssl_context": ssl_context(security)}


def _require(variable: str, path: Path | None) -> Path:
    if path is None or not str(path):
        raise ConfigError(f"POVWATCH_SECURITY_PROTOCOL is SSL but {variable} is not set")
    if not path.is_file():
        raise ConfigError(f"{variable}: {path} does not exist or is not a file")
    return path


@lru_cache(maxsize=64)
def ssl_context(security: ClientSecurity) -> ssl.SSLContext:
    """The TLS context of one party: trusts the CA file only, presents the certificate (cached per party)."""
    from aiokafka.helpers import create_ssl_context

    cafile = _require("POVWATCH_SSL_CAFILE", security.cafile)
    certfile = _require("POVWATCH_SSL_CERTFILE", security.certfile)
    keyfile = _require("POVWATCH_SSL_KEYFILE", security.keyfile)
    try:
        context = ssl.create_default_context(purpose=ssl.Purpose.SERVER_AUTH, cafile=str(cafile))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"POVWATCH_SSL_CAFILE: {cafile} is not a CA certificate in PEM ({_reason(exc)})") from None
    try:
        context.load_cert_chain(str(certfile), str(keyfile))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"POVWATCH_SSL_CERTFILE {certfile} / POVWATCH_SSL_KEYFILE {keyfile}: not a certificate "
                          f"and its private key in PEM ({_reason(exc)})") from None
    made: ssl.SSLContext = create_ssl_context(cafile=str(cafile), certfile=str(certfile), keyfile=str(keyfile))
    return made


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def tool_properties(security: ClientSecurity | None = None) -> str:
    """A Kafka client properties file (Java tools: kafka-topics --command-config ...) for the party; PEM files
    are read by the tool itself (ssl.keystore.type=PEM: the certificate and key files, concatenated by the caller
    into one, see `pem_keystore`)."""
    security = security or current()
    if not security.secure:
        return "security.protocol=PLAINTEXT\n"
    ssl_context(security)  # the files are checked here: one line naming the bad one
    return (f"security.protocol=SSL\n"
            f"ssl.truststore.type=PEM\nssl.truststore.location={security.cafile}\n"
            f"ssl.keystore.type=PEM\nssl.keystore.location={pem_keystore_path(security)}\n")


def pem_keystore_path(security: ClientSecurity) -> Path:
    """Where the party's key and certificate chain, in one PEM file as Kafka's PEM keystore wants it, are written
    (beside the certificate, readable by its owner only)."""
    assert security.certfile is not None and security.keyfile is not None
    target = security.certfile.with_suffix(".keystore.pem")
    text = security.keyfile.read_text() + security.certfile.read_text()
    if not target.exists() or target.read_text() != text:
        target.touch(mode=0o600)
        target.write_text(text)
    return target


def from_toml(kafka: TomlTable, base: Path) -> ClientSecurity | None:
    """The `[kafka]` table's certificate: None when it names none (the process's settings apply); all three
    files or none (one line naming what is missing); checked now, so a bad file fails at start."""
    files = {key: kafka.get(key, str) for key in ("cafile", "certfile", "keyfile")}
    if not any(files.values()):
        return None
    missing = [key for key, value in files.items() if not value]
    if missing:
        raise ConfigError(f"{kafka.where}: {', '.join(missing)} missing: name the CA file, the certificate and "
                          "its key together")
    paths = {key: base / str(value) for key, value in files.items()}
    security = ClientSecurity("SSL", paths["cafile"], paths["certfile"], paths["keyfile"])
    try:
        ssl_context(security)
    except ConfigError as exc:  # say which file of the connector's, not which variable
        raise ConfigError(f"{kafka.where} in the connector's file: {exc}".replace("POVWATCH_SSL_", "")) from None
    return security
