"""The intake HTTP API (FastAPI): `POST /v1/intake/<channel>`, `/metrics`, OpenAPI at `/docs`.

`create_app` wires the pure mapping (services/intake/mapping.py) to a `Sink` (publishing, with the broker's
acknowledgement) and the clock; it does no I/O of its own, so the unit tests drive it with an in-memory sink.

Answers (docs/feeds.md, "The intake channels"): 202 with the event_id once the broker has acknowledged the event;
401 without a valid token (a missing, malformed or unknown bearer token), 403 with another channel's token; 422
with every field error; 409 when a request_id is reused for a different request; 413 for a body over 64 KiB; 503
when the broker cannot take the event now (retry: nothing was accepted). Idempotency: the answer to each event is
remembered (the last 100,000, seeded at start-up with the event ids already on the intake topics); the same request
again gets the same answer and publishes nothing, in this process or after a restart (after a restart a reused
request_id cannot be told from a replay: it is answered as one).
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from connectors.pseudonym import Pseudonymiser
from plumbing.clock import Clock, utc_now
from schemas.codec import Codec
from schemas.errors import BrokerUnavailable
from services.intake.mapping import CHANNELS, MODELS, Invalid, to_event, validate

__all__ = ["Sink", "IntakeConfig", "create_app", "MAX_BODY", "REMEMBERED", "RESPONSES"]

MAX_BODY = 64 * 1024
REMEMBERED = 100_000


# (channel, HTTP status, event id or None, pseudonymous subjects) -> awaited after each request: the audit trail
AuditHook = Callable[[str, int, "str | None", list[str]], Awaitable[None]]


class Sink(Protocol):
    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        """Return once the broker has acknowledged the message; BrokerUnavailable if it cannot."""


@dataclass(frozen=True)
class IntakeConfig:
    tokens: Mapping[str, str]  # channel -> bearer token (channels without one accept nothing)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("povwatch_intake_requests", "Intake requests answered, by channel and status code",
                                ["channel", "code"], registry=registry)
        self.published = Counter("povwatch_intake_events_published", "Events published (acknowledged by the broker)",
                                 ["channel"], registry=registry)
        self.replays = Counter("povwatch_intake_replays", "Requests answered from the idempotency memory "
                               "(same request_id, nothing published)", ["channel"], registry=registry)
        self.broker_errors = Counter("povwatch_intake_broker_errors", "Events the broker could not take (503)",
                                     ["channel"], registry=registry)
        for channel in CHANNELS:
            for code in ("202", "401", "403", "409", "413", "422", "503"):
                self.requests.labels(channel, code)
            self.published.labels(channel)
            self.replays.labels(channel)
            self.broker_errors.labels(channel)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _request_body_doc(channel: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": MODELS[channel].model_json_schema()}}}}


RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"description": "accepted: the event is on the topic; body {\"event_id\": ...}"},
    401: {"description": "no valid bearer token"},
    403: {"description": "another channel's token"},
    409: {"description": "this request_id was used for a different request"},
    413: {"description": "body over 64 KiB"},
    422: {"description": "every field error: {\"detail\": ..., \"errors\": [{\"field\": ..., \"message\": ...}]}"},
    503: {"description": "the broker cannot take the event now; nothing was accepted, retry later"},
}


def create_app(config: IntakeConfig, *, sink: Sink, pseudonymiser: Pseudonymiser, codec: Codec,
               clock: Clock | None = None, today: Callable[[], dt.date] | None = None,
               registry: CollectorRegistry | None = None, published: Iterable[tuple[str, str]] = (),
               audit: AuditHook | None = None) -> FastAPI:
    """The API over `sink`. `clock` gives aware datetimes (default: now, UTC); `today` the date for the "not in
    the future" check (default: the machine's local date; the command passes the prefecture's, POVWATCH_TIMEZONE).
    `published`: (channel, event_id) of events already on the topics (read at start-up), answered as replays.
    `audit(channel, status, event_id, subjects)` is awaited after every request (the audit trail)."""
    now = clock or utc_now
    current_day = today or dt.date.today
    registry = registry if registry is not None else CollectorRegistry()
    metrics = _Metrics(registry)
    # event_id -> (fingerprint of the request, answer); no fingerprint for events found on the topics at start-up
    answers: OrderedDict[str, tuple[str | None, dict[str, Any]]] = OrderedDict()
    for channel, event_id in published:
        answers[event_id] = (None, {"event_id": event_id, "channel": channel, "topic": CHANNELS[channel]})
        answers.move_to_end(event_id)
        if len(answers) > REMEMBERED:
            answers.popitem(last=False)
    locks: dict[str, tuple[asyncio.Lock, int]] = {}  # event_id -> (lock, requests holding or awaiting it)

    @contextlib.asynccontextmanager
    async def one_at_a_time(event_id: str) -> AsyncIterator[None]:
        """Requests for the same event wait for each other (a concurrent replay sees the first one's answer);
        different events go on in parallel."""
        lock, users = locks.get(event_id, (asyncio.Lock(), 0))
        locks[event_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = locks[event_id]
            if users == 1:
                del locks[event_id]
            else:
                locks[event_id] = (lock, users - 1)
    tokens = {channel: token.encode("utf-8") for channel, token in config.tokens.items()}

    app = FastAPI(title="povwatch intake", version="1",
                  description="The intake channels of the poverty-relapse monitoring hub (docs/feeds.md, \"The "
                              "intake channels\"): self-declarations, cadre visits and social clues, one JSON object "
                              "per request, each channel with its own bearer token.")

    def answer(channel: str, code: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
               ) -> JSONResponse:
        metrics.requests.labels(channel, str(code)).inc()
        return JSONResponse(dict(body), status_code=code, headers=dict(headers or {}))

    def authorise(channel: str, request: Request) -> JSONResponse | None:
        token = _bearer(request)
        if token is not None:
            presented = token.encode("utf-8", "replace")
            matches = {c for c, t in tokens.items() if hmac.compare_digest(presented, t)}
            if channel in matches:
                return None
            if matches:
                return answer(channel, 403, {"detail": f"this token is not allowed to post to {channel}"})
        return answer(channel, 401, {"detail": "a valid bearer token for this channel is required "
                                               "(Authorization: Bearer <token>)"},
                      {"WWW-Authenticate": 'Bearer realm="povwatch-intake"'})

    async def intake(channel: str, request: Request, about: dict[str, Any]) -> JSONResponse:
        refused = authorise(channel, request)
        if refused is not None:
            return refused
        raw = bytearray()
        async for chunk in request.stream():  # read no more than the limit, whatever Content-Length says
            raw += chunk
            if len(raw) > MAX_BODY:
                return answer(channel, 413, {"detail": f"the body is larger than {MAX_BODY} bytes"})
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            problem = {"field": "body", "message": f"not valid JSON: {exc}"}
            return answer(channel, 422, {"detail": "1 field error(s)", "errors": [problem]})
        result = validate(channel, data, current_day())
        if isinstance(result, Invalid):
            return answer(channel, 422, result.as_dict())
        event = to_event(result, pseudonymiser, now())
        about["event_id"] = event.event_id
        about["subjects"] = [f"{kind}:{event.record[field]}" for kind, field in
                             (("household", "household_id"), ("person", "head_person_key")) if event.record.get(field)]
        fingerprint = result.fingerprint
        async with one_at_a_time(event.event_id):  # from "seen?" to "remembered"
            seen = answers.get(event.event_id)
            if seen is not None:
                if seen[0] is not None and seen[0] != fingerprint:
                    return answer(channel, 409, {"detail": "this request_id was already used for a different "
                                                           "request; choose a new request_id"})
                answers.move_to_end(event.event_id)
                metrics.replays.labels(channel).inc()
                return answer(channel, 202, seen[1], {"Idempotent-Replayed": "true"})
            try:
                await sink.publish(event.topic, event.key, codec.encode(event.schema, event.record))
            except BrokerUnavailable as exc:
                metrics.broker_errors.labels(channel).inc()
                return answer(channel, 503, {"detail": f"the event could not be published, nothing was accepted; "
                                                       f"retry later ({exc})"}, {"Retry-After": "5"})
            metrics.published.labels(channel).inc()
            body = {"event_id": event.event_id, "channel": channel, "topic": event.topic}
            answers[event.event_id] = (fingerprint, body)
            while len(answers) > REMEMBERED:
                answers.popitem(last=False)
        return answer(channel, 202, body)

    def route_for(channel: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def route(request: Request) -> JSONResponse:
            about: dict[str, Any] = {}
            response = await intake(channel, request, about)
            if audit is not None:
                await audit(channel, response.status_code, about.get("event_id"), about.get("subjects", []))
            return response

        return route

    for channel in CHANNELS:
        app.add_api_route(f"/v1/intake/{channel}", route_for(channel), methods=["POST"], status_code=202,
                          summary=f"{channel}: one report", description=MODELS[channel].__doc__ or "",
                          responses=RESPONSES, openapi_extra=_request_body_doc(channel),
                          response_class=JSONResponse, name=f"intake_{channel.replace('-', '_')}")

    @app.get("/metrics", include_in_schema=False)
    def serve_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
