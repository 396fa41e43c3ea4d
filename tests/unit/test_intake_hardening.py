"""Issue #13 item 6, the intake API and the desk's start-up: the 422 never echoes a field name the schemas do not
have; idempotency keys belong to the token that sent them; /docs is off unless POVWATCH_INTAKE_DOCS=1 (no page
pulling Swagger UI from a CDN); POVWATCH_DESK_INSECURE_COOKIES=1 is refused unless the desk listens on loopback."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from plumbing.settings import Settings
from schemas.errors import ConfigError
from services.desk.server import check_cookie_policy
from services.intake.app import IntakeConfig, create_app
from services.intake.server import parse_tokens
from tests.unit.test_intake import CODEC, NOW, PSEUDO, TOKENS, MemorySink, body, post

SECOND = "cadre-token-second-0123456789"


def app_client(sink: MemorySink, tokens: dict[str, object] | None = None, **options: object) -> TestClient:
    app = create_app(IntakeConfig(tokens or TOKENS), sink=sink, pseudonymiser=PSEUDO, codec=CODEC,  # type: ignore[arg-type]
                     clock=lambda: NOW, registry=CollectorRegistry(), **options)  # type: ignore[arg-type]
    return TestClient(app)


def test_the_422_never_echoes_an_unknown_field_name() -> None:
    client = app_client(MemorySink())
    hostile = "<script>alert(1)</script>" + "x" * 5000
    answer = post(client, "self-declaration", {**body(), hostile: 1, "nmae": "x"})
    assert answer.status_code == 422
    text = answer.text
    assert "script" not in text and "nmae" not in text
    assert answer.json()["errors"] == [{"field": "body", "message": "2 unknown field(s)"}]
    known = post(client, "self-declaration", body(visit_result="正常"))  # a field of another channel: named
    assert known.json()["errors"] == [{"field": "visit_result", "message": "only for cadre-visit requests"}]


def test_idempotency_keys_belong_to_the_token() -> None:
    sink = MemorySink()
    client = app_client(sink, {**TOKENS, "cadre-visit": [TOKENS["cadre-visit"], SECOND]})
    first = post(client, "cadre-visit", body(visit_result="存在风险", request_id="r-1"))
    assert first.status_code == 202
    # another token reusing the key for its own request: its own event - no 409 telling it "r-1" was used
    other = post(client, "cadre-visit", body(visit_result="正常", request_id="r-1"), token=SECOND)
    assert other.status_code == 202 and other.json()["event_id"] != first.json()["event_id"]
    assert "Idempotent-Replayed" not in other.headers
    # ... and sending the first token's request with it never gets the first token's answer (nor event id)
    copied = post(client, "cadre-visit", body(visit_result="存在风险", request_id="r-1"), token=SECOND)
    assert copied.status_code == 409 and first.json()["event_id"] not in copied.text
    replay = post(client, "cadre-visit", body(visit_result="存在风险", request_id="r-1"))  # the owner's replay
    assert replay.json()["event_id"] == first.json()["event_id"] and replay.headers["Idempotent-Replayed"] == "true"
    assert len(sink.messages) == 2


def test_several_tokens_per_channel_parse() -> None:
    tokens = parse_tokens(SecretStr(json.dumps({**TOKENS, "cadre-visit": [TOKENS["cadre-visit"], SECOND]})))
    assert tokens["cadre-visit"] == (TOKENS["cadre-visit"], SECOND)
    with pytest.raises(ConfigError, match="own token"):
        parse_tokens(SecretStr(json.dumps({**TOKENS, "cadre-visit": [TOKENS["cadre-visit"], TOKENS["social-clue"]]})))


def test_docs_are_off_unless_asked_for() -> None:
    client = app_client(MemorySink())
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200  # the contract stays readable by clients
    on = app_client(MemorySink(), docs=True)
    page = on.get("/docs")
    assert page.status_code == 200
    assert Settings(intake_docs=True).intake_docs and not Settings().intake_docs


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "desk.example.org"])
def test_insecure_cookies_only_on_loopback(host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        check_cookie_policy(host, insecure=True)
    check_cookie_policy(host, insecure=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_insecure_cookies_on_loopback_are_allowed(host: str) -> None:
    check_cookie_policy(host, insecure=True)
