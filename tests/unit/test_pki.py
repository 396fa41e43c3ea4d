"""The private CA (plumbing/pki.py), the client TLS options (plumbing/kafka_security.py) and the secured broker's
properties (plumbing/kafka_secure_broker.py), on real certificates made in a temp dir."""
from __future__ import annotations

import datetime as dt
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from plumbing import kafka_secure_broker, kafka_security, pki
from plumbing.kafka_local import SERVER_PROPERTIES_TEMPLATE
from plumbing.kafka_security import ClientSecurity
from schemas.errors import ConfigError
from services.cli import main

NOW = dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    assert pki.init(directory, now=NOW).startswith("created the CA")
    return directory


def test_init_creates_a_ca_whose_key_only_its_owner_reads_and_never_overwrites_it(ca: Path) -> None:
    cert_path, key_path = pki.ca_paths(ca)
    assert _mode(key_path) == 0o600 and _mode(ca) == 0o700
    cert = _cert(cert_path)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    before = (cert_path.read_bytes(), key_path.read_bytes())
    assert pki.init(ca).startswith("CA already exists")
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_half_a_ca_is_refused_not_recreated(ca: Path) -> None:
    pki.ca_paths(ca)[0].unlink()
    with pytest.raises(ConfigError, match="half a CA"):
        pki.init(ca)


def test_issue_names_the_party_in_the_subject_signed_by_the_ca(ca: Path) -> None:
    party = pki.issue(ca, "public-security", "department:public-security", days=30, now=NOW)
    cert_path, key_path = pki.party_paths(ca, "public-security")
    cert = _cert(cert_path)
    assert cert.subject.rfc4514_string() == "CN=public-security,OU=department:public-security"
    cert.verify_directly_issued_by(_cert(pki.ca_paths(ca)[0]))
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=30)
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert _mode(key_path) == 0o600
    assert party.principal == "User:public-security" and party.expires.startswith("2026-12-31")
    assert [p.name for p in pki.parties(ca)] == ["public-security"]


def test_the_broker_maps_the_subject_to_the_party_s_name(ca: Path) -> None:
    """The broker's mapping rule (a Java regex, here the same pattern) on the subject as RFC 2253 writes it."""
    pki.issue(ca, "pboc", "department:pboc", now=NOW)
    subject = _cert(pki.party_paths(ca, "pboc")[0]).subject.rfc4514_string()
    rule = re.match(r"RULE:(.*)/\$1/,DEFAULT", kafka_secure_broker.PRINCIPAL_RULE)
    assert rule is not None
    found = re.match(rule.group(1), subject)
    assert found is not None and found.group(1) == "pboc"


@pytest.mark.parametrize(("name", "role", "days", "problem"), [
    ("Public Security", "department:x", 10, "party name"),
    ("a,b", "monitor", 10, "party name"),
    ("ok", "OU=x,CN=admin", 10, "cannot stand"),
    ("ok", "monitor", 0, "--days"),
])
def test_issue_refuses_what_cannot_be_a_principal(ca: Path, name: str, role: str, days: int, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        pki.issue(ca, name, role, days=days)


def test_a_name_is_issued_once_and_revoked_for_good(ca: Path) -> None:
    pki.issue(ca, "monitor", "monitor", now=NOW)
    with pytest.raises(ConfigError, match="already issued"):
        pki.issue(ca, "monitor", "monitor")
    done = pki.revoke(ca, "monitor", now=NOW)
    assert done.revoked and done.revoked_at is not None and done.revoked_at.startswith("2026-12-01")
    assert pki.party(ca, "monitor") == done
    with pytest.raises(ConfigError, match="already issued.*revoked"):
        pki.issue(ca, "monitor", "monitor")
    with pytest.raises(ConfigError, match="no party 'nobody'"):
        pki.revoke(ca, "nobody")


def test_issue_without_a_ca_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pki init"):
        pki.issue(tmp_path, "monitor", "monitor")


def test_a_broker_certificate_serves_loopback_and_is_kept(ca: Path) -> None:
    cert_path, _ = pki.broker_certificate(ca, "broker-1")
    cert = _cert(cert_path)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    first = cert_path.read_bytes()
    pki.broker_certificate(ca, "broker-1")
    assert cert_path.read_bytes() == first


def test_pki_commands_issue_list_and_revoke(ca: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "issue", "relay", "--role", "relay", "--dir", str(ca), "--days", "10"]) == 0
    assert main(["pki", "issue", "x", "--role", "department:atlantis", "--dir", str(ca)]) == 2
    assert "no department 'atlantis'" in capsys.readouterr().err
    assert main(["pki", "revoke", "relay", "--no-apply", "--dir", str(ca)]) == 0
    assert main(["pki", "list", "--dir", str(ca)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("relay "))
    assert "relay" in row and "revoked" in row


def test_client_options_are_empty_in_plaintext_and_carry_the_party_s_certificate_in_ssl(ca: Path) -> None:
    assert kafka_security.client_options(kafka_security.PLAINTEXT) == {}
    pki.issue(ca, "intake", "intake")
    cert, key = pki.party_paths(ca, "intake")
    options = kafka_security.client_options(ClientSecurity("SSL", pki.ca_paths(ca)[0], cert, key))
    assert options["security_protocol"] == "SSL" and options["ssl_context"].verify_mode.name == "CERT_REQUIRED"


def test_acting_as_wins_over_the_process_s_security(ca: Path) -> None:
    pki.issue(ca, "desk", "desk")
    cert, key = pki.party_paths(ca, "desk")
    party = ClientSecurity("SSL", pki.ca_paths(ca)[0], cert, key)
    with kafka_security.acting_as(party):
        assert kafka_security.current() == party
    assert kafka_security.current() != party


def test_a_wrong_or_missing_certificate_is_one_line_naming_the_file(ca: Path) -> None:
    pki.issue(ca, "a", "desk")
    pki.issue(ca, "b", "desk")
    cafile = pki.ca_paths(ca)[0]
    cert_a, _ = pki.party_paths(ca, "a")
    _, key_b = pki.party_paths(ca, "b")
    with pytest.raises(ConfigError, match=r"POVWATCH_SSL_CERTFILE: .*missing\.crt does not exist"):
        kafka_security.ssl_context(ClientSecurity("SSL", cafile, ca / "missing.crt", key_b))
    with pytest.raises(ConfigError, match=r"POVWATCH_SSL_CERTFILE .*a\.crt / POVWATCH_SSL_KEYFILE .*b\.key: not a "):
        kafka_security.ssl_context(ClientSecurity("SSL", cafile, cert_a, key_b))
    with pytest.raises(ConfigError, match=r"POVWATCH_SSL_CAFILE: .*a\.key is not a CA certificate"):
        kafka_security.ssl_context(ClientSecurity("SSL", pki.party_paths(ca, "a")[1], cert_a, key_b))
    with pytest.raises(ConfigError, match="POVWATCH_SSL_KEYFILE is not set"):
        kafka_security.ssl_context(ClientSecurity("SSL", cafile, cert_a, None))


def test_a_bad_certificate_in_the_environment_is_one_line_from_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("POVWATCH_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("POVWATCH_SSL_CAFILE", str(tmp_path / "nowhere.crt"))
    assert main(["topics", "ensure"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere.crt does not exist" in err


def test_the_secured_properties_have_no_plaintext_listener() -> None:
    plain = SERVER_PROPERTIES_TEMPLATE.format(node_id=1, voters="1@127.0.0.1:9093", port=9092, controller_port=9093,
                                              log_dir="/data/logs", replication=1, min_isr=1, group_delay_ms=0)
    tls = kafka_secure_broker.BrokerTls("broker-1", Path("/pki/ca.crt"), Path("/pki/broker-1.keystore.pem"))
    secured = kafka_secure_broker.secure_properties(plain, tls)
    props = dict(line.split("=", 1) for line in secured.splitlines())
    assert "PLAINTEXT" not in secured
    assert props["listeners"] == "SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "SSL://127.0.0.1:9092"
    assert props["listener.security.protocol.map"] == "SSL:SSL,CONTROLLER:SSL"
    assert props["ssl.client.auth"] == "required" and props["super.users"] == "User:admin;User:broker-1"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    assert kafka_secure_broker.is_secure(secured) and not kafka_secure_broker.is_secure(plain)


def test_a_connector_s_file_names_its_certificate(ca: Path, tmp_path: Path) -> None:
    from services.compare.config import load_compare_config
    from services.watch.config import load_config

    pki.issue(ca, "pboc", "department:pboc")
    body = ('department = "pboc"\n[kafka]\ncafile = "pki/ca.crt"\ncertfile = "pki/parties/pboc.crt"\n'
            'keyfile = "pki/parties/pboc.key"\n[[folders]]\npath = "drop"\nfeed = "deposit-loan"\n'
            '[comparison]\n[[comparison.sources]]\nfeed = "deposit-loan"\npath = "data.csv"\n')
    path = tmp_path / "pboc.toml"
    path.write_text(body)
    want = ClientSecurity("SSL", tmp_path / "pki" / "ca.crt", tmp_path / "pki" / "parties" / "pboc.crt",
                          tmp_path / "pki" / "parties" / "pboc.key")
    assert load_config(path).security == want
    assert load_compare_config(path).security == want
    path.write_text(body.replace('keyfile = "pki/parties/pboc.key"\n', ""))
    with pytest.raises(ConfigError, match="kafka: keyfile missing"):
        load_config(path)
    path.write_text(body.replace("parties/pboc.key", "parties/nope.key"))
    with pytest.raises(ConfigError, match=r"kafka in the connector's file: KEYFILE: .*nope\.key does not exist"):
        load_compare_config(path)
