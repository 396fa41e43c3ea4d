"""The intake API without a network: the pure request -> event mapping, and the FastAPI app driven in process
(httpx through Starlette's TestClient) over an in-memory sink. Status codes as the intake contract gives them."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from connectors.idcard import check_character
from connectors.pseudonym import Pseudonymiser
from schemas.catalog import INTAKE_CHANNELS, INTAKE_SCHEMA, intake_topics, project_topics
from schemas.codec import default_codec
from schemas.errors import BrokerUnavailable, ConfigError
from services.intake.app import IntakeConfig, create_app
from services.intake.mapping import Invalid, Report, mask_free_text, to_event, validate
from services.intake.server import parse_tokens

PSEUDO = Pseudonymiser(b"unit-test-key-0123456789")
CODEC = default_codec()
TODAY = dt.date.today()
NOW = dt.datetime(2025, 3, 6, 8, 0, tzinfo=dt.UTC)
HEAD = "65270119680305" + "123"
HEAD += check_character(HEAD)
TOKENS = {"self-declaration": "self-token-0123456789", "cadre-visit": "cadre-token-0123456789",
          "social-clue": "clue-token-0123456789"}


def body(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"head_id_number": HEAD, "risk_type": "因病", "description": "老伴住院, 自付三万元",
                            "reported_on": "2025-03-05", "reporter": "王桂兰"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


class MemorySink:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bytes]] = []
        self.down = False

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self.down:
            raise BrokerUnavailable("cannot reach Kafka at test: down")
        self.messages.append((topic, key, value))


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def client(sink: MemorySink) -> TestClient:
    app = create_app(IntakeConfig(TOKENS), sink=sink, pseudonymiser=PSEUDO, codec=CODEC, clock=lambda: NOW,
                     registry=CollectorRegistry())
    return TestClient(app, raise_server_exceptions=True)


def post(client: TestClient, channel: str, payload: Any, token: str | None = "same") -> Any:
    headers = {}
    if token == "same":
        token = TOKENS[channel]
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if isinstance(payload, (bytes, str)):
        return client.post(f"/v1/intake/{channel}", content=payload, headers=headers)
    return client.post(f"/v1/intake/{channel}", json=payload, headers=headers)


# --- the catalogue -------------------------------------------------------------------------------------------------

def test_intake_topics_are_project_topics_and_not_department_feeds() -> None:
    from schemas.catalog import EVENT_FEEDS

    assert intake_topics() == ("events.intake.self-declaration", "events.intake.cadre-visit",
                               "events.intake.social-clue")
    names = [spec.name for spec in project_topics()]
    assert set(intake_topics()) <= set(names)
    assert not set(INTAKE_CHANNELS) & set(EVENT_FEEDS)  # the monitor and the file connectors do not take them
    assert all(CODEC.schema(ch.schema)["type"] == "record" for ch in INTAKE_CHANNELS)


# --- mapping -------------------------------------------------------------------------------------------------------

def test_a_valid_self_declaration_becomes_a_pseudonymised_event() -> None:
    report = validate("self-declaration", body(description="王桂兰说: 老伴住院, 电话13912345678, 身份证" + HEAD),
                      TODAY)
    assert isinstance(report, Report)
    event = to_event(report, PSEUDO, NOW)
    record = event.record
    assert event.topic == "events.intake.self-declaration"
    assert event.key == PSEUDO.person_key(HEAD).encode()
    assert record["head_person_key"] == PSEUDO.person_key(HEAD) and record["household_id"] is None
    assert record["channel"] == "SELF_DECLARATION" and record["risk_type"] == "ILLNESS"
    assert record["occurred_at"] == record["reported_on"] == dt.date(2025, 3, 5)
    assert record["description"] == "<name-redacted>说: 老伴住院, 电话<phone-redacted>, 身份证<id-redacted>"
    assert record["source"]["department"] == "intake" and record["source"]["feed"] == "self-declaration"
    encoded = CODEC.encode(INTAKE_SCHEMA, record)
    assert HEAD.encode() not in encoded and "王桂兰".encode() not in encoded
    assert CODEC.decode(encoded, expect=INTAKE_SCHEMA).record == record


def test_numeric_household_ids_are_household_ids() -> None:
    for household in ("652701100201000123", "6527011002010001"):
        assert isinstance(validate("self-declaration", body(household_id=household), TODAY), Report)


def test_household_id_alone_keys_the_event_by_household() -> None:
    report = validate("social-clue", body(head_id_number=None, household_id="BL-100201-0001", clue_source="信访"),
                      TODAY)
    assert isinstance(report, Report)
    event = to_event(report, PSEUDO, NOW)
    assert event.key == b"BL-100201-0001"
    assert event.record["head_person_key"] is None and event.record["clue_source"] == "PETITION"


def test_event_id_follows_request_id_or_the_report() -> None:
    def eid(**changes: Any) -> str:
        report = validate("cadre-visit", body(visit_result="存在风险", **changes), TODAY)
        assert isinstance(report, Report)
        return to_event(report, PSEUDO, NOW).event_id

    assert eid() == eid()  # same report, no request_id: same event
    assert eid() != eid(description="另一件事")
    assert eid(request_id="r-1") == eid(request_id="r-1", description="另一件事")  # the request_id is the identity
    assert eid(request_id="r-1") != eid(request_id="r-2")
    assert eid(reporter="李四") == eid()  # the reporter is not part of the published report
    # the ID number's normalisation does not change the identity (15-digit legacy numbers too)
    assert eid(head_id_number=HEAD.lower() + " ") == eid()


@pytest.mark.parametrize(("channel", "changes", "field", "words"), [
    ("self-declaration", {"head_id_number": HEAD[:17] + ("0" if HEAD[17] != "0" else "1")}, "head_id_number",
     "check character"),
    ("self-declaration", {"head_id_number": None}, "body", "one of head_id_number or household_id"),
    ("self-declaration", {"household_id": HEAD, "head_id_number": None}, "household_id", "is a resident ID number"),
    ("self-declaration", {"household_id": "x" * 41}, "household_id", "at most 40"),
    ("self-declaration", {"risk_type": "生病"}, "risk_type", "因病 / 因灾"),
    ("self-declaration", {"description": "x" * 2001}, "description", "2000"),
    ("self-declaration", {"description": "  "}, "description", "at least 1"),
    ("self-declaration", {"reported_on": "2025/3/5"}, "reported_on", "YYYY-MM-DD"),
    ("self-declaration", {"reported_on": "2025-02-30"}, "reported_on", "not a real date"),
    ("self-declaration", {"reported_on": (TODAY + dt.timedelta(days=1)).isoformat()}, "reported_on", "future"),
    ("self-declaration", {"reporter": None}, "reporter", "required"),
    ("self-declaration", {"visit_result": "正常"}, "visit_result", "only for cadre-visit"),
    ("self-declaration", {"clue_source": "媒体"}, "clue_source", "only for social-clue"),
    ("self-declaration", {"nmae": "x"}, "nmae", "unknown field"),
    ("self-declaration", {"request_id": "has spaces"}, "request_id", "pattern"),
    ("self-declaration", {"description": 12}, "description", "string"),
    ("cadre-visit", {}, "visit_result", "required"),
    ("cadre-visit", {"visit_result": "很好"}, "visit_result", "正常 / 存在风险 / 已返贫"),
    ("social-clue", {}, "clue_source", "required"),
])
def test_field_errors(channel: str, changes: dict[str, Any], field: str, words: str) -> None:
    result = validate(channel, body(**changes), TODAY)
    assert isinstance(result, Invalid), result
    messages = {p.field: p.message for p in result.problems}
    assert field in messages, messages
    assert words in messages[field]


def test_every_error_at_once_and_no_value_echoed() -> None:
    bad_id = HEAD[:17] + ("0" if HEAD[17] != "0" else "1")
    result = validate("cadre-visit", {"head_id_number": bad_id, "risk_type": "?", "reported_on": "tomorrow"}, TODAY)
    assert isinstance(result, Invalid)
    assert {p.field for p in result.problems} >= {"head_id_number", "risk_type", "reported_on", "description",
                                                  "reporter", "visit_result"}
    assert bad_id not in json.dumps(result.as_dict(), ensure_ascii=False)


def test_masking_leaves_ordinary_numbers() -> None:
    assert mask_free_text("自付30000元, 住院12天, 2025年3月5日") == "自付30000元, 住院12天, 2025年3月5日"
    assert mask_free_text("座机0909-2223344或 138 1234 5678") == "座机<phone-redacted>或 <phone-redacted>"
    assert mask_free_text("全角" + "６５２７０１１９６８０３０５１２３４") == "全角<id-redacted>"


# --- the app -------------------------------------------------------------------------------------------------------

def test_accepted_request_publishes_one_event(client: TestClient, sink: MemorySink) -> None:
    response = post(client, "self-declaration", body())
    assert response.status_code == 202, response.text
    assert len(sink.messages) == 1
    topic, key, value = sink.messages[0]
    assert topic == "events.intake.self-declaration" and key == PSEUDO.person_key(HEAD).encode()
    assert response.json()["event_id"] == CODEC.decode(value).record["event_id"]


def test_tokens(client: TestClient, sink: MemorySink) -> None:
    assert post(client, "cadre-visit", body(visit_result="正常"), token=None).status_code == 401
    missing = post(client, "cadre-visit", body(visit_result="正常"), token="wrong-token-0123456789")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    other = post(client, "cadre-visit", body(visit_result="正常"), token=TOKENS["social-clue"])
    assert other.status_code == 403
    basic = client.post("/v1/intake/cadre-visit", json=body(visit_result="正常"),
                        headers={"Authorization": f"Basic {TOKENS['cadre-visit']}"})
    assert basic.status_code == 401
    assert sink.messages == []
    # the token is checked before the body: an invalid body without a token is 401, not 422
    assert post(client, "cadre-visit", b"{not json", token=None).status_code == 401


def test_invalid_bodies_are_422_with_every_error(client: TestClient, sink: MemorySink) -> None:
    for payload in (b"{not json", b"[1, 2]", b"", "\"text\"", b"\xff\xfe", b'{"description": "\\ud800"}'):
        response = post(client, "social-clue", payload)
        assert response.status_code == 422, (payload, response.text)
        assert response.json()["errors"]
    response = post(client, "social-clue", body(risk_type="生病", reported_on="2025-13-01"))
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"risk_type", "reported_on", "clue_source"}
    assert sink.messages == []


def test_lone_surrogates_and_nul_never_give_500(client: TestClient, sink: MemorySink) -> None:
    raw = json.dumps(body(description="a\u0000b", reporter="\ud83d")).encode("utf-8", "surrogatepass")
    assert post(client, "self-declaration", raw).status_code == 422
    ok = post(client, "self-declaration", body(description="a\u0000b"))
    assert ok.status_code == 202


def test_same_request_id_is_one_event_with_the_same_answer(client: TestClient, sink: MemorySink) -> None:
    first = post(client, "self-declaration", body(request_id="app-7f3c"))
    again = post(client, "self-declaration", body(request_id="app-7f3c"))
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() and again.headers["Idempotent-Replayed"] == "true"
    assert len(sink.messages) == 1
    conflict = post(client, "self-declaration", body(request_id="app-7f3c", description="别的事"))
    assert conflict.status_code == 409 and "request_id" in conflict.json()["detail"]
    # the same request_id on another channel is another request
    assert post(client, "social-clue", body(request_id="app-7f3c", clue_source="网络")).status_code == 202
    assert len(sink.messages) == 2
    # without request_id an identical report is one event too
    post(client, "self-declaration", body(description="第二件事"))
    post(client, "self-declaration", body(description="第二件事"))
    assert len(sink.messages) == 3


def test_broker_down_is_503_and_nothing_remembered(client: TestClient, sink: MemorySink) -> None:
    sink.down = True
    response = post(client, "self-declaration", body(request_id="r-9"))
    assert response.status_code == 503 and response.headers["Retry-After"]
    sink.down = False
    assert post(client, "self-declaration", body(request_id="r-9")).status_code == 202
    assert len(sink.messages) == 1


def test_metrics_and_docs(client: TestClient) -> None:
    post(client, "self-declaration", body())
    post(client, "self-declaration", body(), token=None)
    text = client.get("/metrics").text
    assert 'povwatch_intake_requests_total{channel="self-declaration",code="202"} 1.0' in text
    assert 'povwatch_intake_requests_total{channel="self-declaration",code="401"} 1.0' in text
    assert 'povwatch_intake_events_published_total{channel="self-declaration"} 1.0' in text
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/v1/intake/cadre-visit"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "visit_result" in schema["required"] and "reporter" in schema["properties"]
    assert client.post("/v1/intake/unknown", json={}).status_code == 404


# --- configuration -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "words"), [
    (None, "not set"),
    ("{oops", "not valid JSON"),
    ("[]", "JSON object"),
    ('{"walk-in": "0123456789abcdefgh"}', "unknown channel walk-in"),
    ('{"cadre-visit": "short"}', "at least 16"),
    ('{"cadre-visit": "0123456789abcdefgh", "social-clue": "0123456789abcdefgh"}', "own token"),
])
def test_bad_tokens_are_config_errors(value: str | None, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        parse_tokens(SecretStr(value) if value is not None else None)
    assert "0123456789abcdefgh" not in str(info.value)


def test_tokens_parse() -> None:
    assert parse_tokens(SecretStr(json.dumps(TOKENS))) == TOKENS


def test_events_already_on_the_topics_are_replays(sink: MemorySink) -> None:
    report = validate("self-declaration", body(request_id="before-restart"), TODAY)
    assert isinstance(report, Report)
    event_id = to_event(report, PSEUDO, NOW).event_id
    app = create_app(IntakeConfig(TOKENS), sink=sink, pseudonymiser=PSEUDO, codec=CODEC, registry=CollectorRegistry(),
                     published=[("self-declaration", event_id)])
    client = TestClient(app)
    response = post(client, "self-declaration", body(request_id="before-restart"))
    assert response.status_code == 202 and response.json()["event_id"] == event_id
    assert response.headers["Idempotent-Replayed"] == "true" and sink.messages == []


def test_oversized_and_deeply_nested_bodies(client: TestClient, sink: MemorySink) -> None:
    assert post(client, "self-declaration", b"{" + b" " * (64 * 1024) + b"}").status_code == 413
    deep = post(client, "self-declaration", b"[" * 30_000 + b"]" * 30_000)
    assert deep.status_code == 422 and deep.json()["errors"][0]["field"] == "body"
    assert sink.messages == []


def test_concurrent_replays_publish_once() -> None:
    import asyncio

    import httpx

    class SlowSink(MemorySink):
        async def publish(self, topic: str, key: bytes, value: bytes) -> None:
            await asyncio.sleep(0.05)  # sleep-ok: a slow publish, so that the replays overlap it
            await super().publish(topic, key, value)

    sink = SlowSink()
    app = create_app(IntakeConfig(TOKENS), sink=sink, pseudonymiser=PSEUDO, codec=CODEC, registry=CollectorRegistry())
    headers = {"Authorization": f"Bearer {TOKENS['self-declaration']}"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
            same = [http.post("/v1/intake/self-declaration", json=body(request_id="burst-1"), headers=headers)
                    for _ in range(5)]
            other = [http.post("/v1/intake/self-declaration", json=body(request_id=f"burst-{i}"), headers=headers)
                     for i in range(2, 5)]
            return list(await asyncio.gather(*same, *other))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [202] * 8
    assert len({r.json()["event_id"] for r in responses[:5]}) == 1
    assert len(sink.messages) == 4  # burst-1 once, burst-2..4
