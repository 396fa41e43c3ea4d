"""`povwatch intake`: the intake API on uvicorn, publishing through the Kafka adapter.

Start-up problems are one-line errors (exit 2): POVWATCH_INTAKE_TOKENS missing or malformed, the development key
outside development mode, the port taken, the broker unreachable or the intake topics missing. The socket is bound
before the broker is contacted, so a port in use is reported at once.
"""
from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import socket
import sys
from collections.abc import AsyncGenerator
from typing import cast

import uvicorn
from pydantic import SecretStr

from connectors.pseudonym import Pseudonymiser, pseudonymiser_of
from plumbing.audit import party_of
from plumbing.http_serving import Server, bind
from plumbing.kafka_io import KafkaPublisher, Record, read_topic, topic_offsets
from plumbing.settings import Settings
from schemas.catalog import intake_topics
from schemas.codec import default_codec
from schemas.errors import BrokerUnavailable, ConfigError, DecodeError
from services.intake.app import IntakeConfig, create_app
from services.intake.mapping import CHANNELS

__all__ = ["parse_tokens", "KafkaSink", "published_events", "run_intake", "MIN_TOKEN"]

MIN_TOKEN = 16
_EXAMPLE = '{"self-declaration": "<token>", "cadre-visit": "<token>", "social-clue": "<token>"}'


def parse_tokens(value: SecretStr | None) -> dict[str, str | tuple[str, ...]]:
    """POVWATCH_INTAKE_TOKENS -> channel -> token (or a list of tokens: several senders of one channel, each
    owning its request_ids); ConfigError (never quoting a token) when it cannot be used."""
    if value is None or not value.get_secret_value().strip():
        raise ConfigError(f"POVWATCH_INTAKE_TOKENS is not set: give each channel its bearer token as a JSON object, "
                          f"e.g. {_EXAMPLE}")
    try:
        data = json.loads(value.get_secret_value())
    except ValueError as exc:
        raise ConfigError(f"POVWATCH_INTAKE_TOKENS is not valid JSON ({exc.__class__.__name__} at position "
                          f"{getattr(exc, 'pos', '?')}); expected e.g. {_EXAMPLE}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"POVWATCH_INTAKE_TOKENS must be a non-empty JSON object, channel -> token, e.g. {_EXAMPLE}")
    unknown = sorted(str(channel) for channel in data if channel not in CHANNELS)
    if unknown:
        raise ConfigError(f"POVWATCH_INTAKE_TOKENS: unknown channel {', '.join(unknown)} "
                          f"(channels: {', '.join(CHANNELS)})")
    tokens: dict[str, str | tuple[str, ...]] = {}
    every: list[str] = []
    for channel, given in data.items():
        several = given if isinstance(given, list) and given else [given]
        for token in several:
            if not isinstance(token, str) or len(token.strip()) < MIN_TOKEN or token != token.strip():
                raise ConfigError(f"POVWATCH_INTAKE_TOKENS: the token of {channel} must be a string of at least "
                                  f"{MIN_TOKEN} characters without surrounding spaces (or a list of such strings)")
        every.extend(several)
        tokens[channel] = tuple(several) if isinstance(given, list) else given
    if len(set(every)) != len(every):
        raise ConfigError("POVWATCH_INTAKE_TOKENS: every channel needs its own token (two channels share one)")
    return tokens


class KafkaSink:
    """Publishes one message and waits for the broker's acknowledgement (acks=all).

    One publish at a time: `KafkaPublisher.flush` waits for every message sent so far and hands them over to the
    caller that flushes, so two concurrent publishes could see one of them return before its own message is
    acknowledged. Validation and everything else of a request still run concurrently."""

    def __init__(self, publisher: KafkaPublisher) -> None:
        self._publisher = publisher
        self._lock = asyncio.Lock()

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        async with self._lock:
            await self._publisher.send(topic, key, value)
            await self._publisher.flush()


async def published_events(bootstrap: str) -> list[tuple[str, str]]:
    """(channel, event_id) of every event on the intake topics, oldest first per partition, read up to the end
    offsets taken now: what this service (or an earlier run) has already accepted."""
    offsets = await topic_offsets(bootstrap, intake_topics())
    ends = {(topic, partition): end for topic, parts in offsets.items()
            for partition, (start, end) in enumerate(parts) if end > start}
    found: list[tuple[str, str]] = []
    if not ends:
        return found
    channel_of = {topic: channel for channel, topic in CHANNELS.items()}
    codec = default_codec()
    left = dict(ends)
    reading = cast(AsyncGenerator[Record, None], read_topic(bootstrap, intake_topics(), idle_timeout=15.0))
    async with contextlib.aclosing(reading) as records:
        async for rec in records:
            tp = (rec.topic, rec.partition)
            if tp not in left or rec.offset >= ends[tp]:
                continue
            try:
                found.append((channel_of[rec.topic], str(codec.decode(rec.value).record["event_id"])))
            except (DecodeError, KeyError):
                pass  # not an intake report: nothing to remember
            if rec.offset + 1 >= ends[tp]:
                del left[tp]
                if not left:
                    break
    if left:
        raise BrokerUnavailable(f"could not read the intake topics to their end on {bootstrap}")
    return found


async def _serve(settings: Settings, tokens: dict[str, str | tuple[str, ...]], pseudonymiser: Pseudonymiser,
                 sock: socket.socket) -> None:
    async with KafkaPublisher(settings.bootstrap, client_id="povwatch-intake",
                              require_topics=intake_topics()) as publisher, \
            party_of(settings, "intake").trail(settings.bootstrap) as trail:  # resumes in the background
        published = await published_events(settings.bootstrap)

        async def audit(channel: str, status: int, event_id: str | None, subjects: list[str]) -> None:
            details = {"channel": channel, "status": str(status), **({"event_id": event_id} if event_id else {})}
            try:
                await trail.record("intake.request", subjects=subjects, details=details)
            except BrokerUnavailable as exc:  # the answer is given; the next record resumes the chain
                print(f"povwatch intake: audit record not written: {exc}", file=sys.stderr, flush=True)

        app = create_app(IntakeConfig(tokens), sink=KafkaSink(publisher), pseudonymiser=pseudonymiser,
                         codec=default_codec(), today=lambda: dt.datetime.now(settings.zone).date(),
                         published=published, audit=audit, docs=settings.intake_docs)
        server = Server(uvicorn.Config(app, log_level="info", access_log=True, lifespan="off"))
        host, port = sock.getsockname()[:2]
        print(f"povwatch intake: serving on http://{host}:{port} (channels: {', '.join(sorted(tokens))}; "
              f"{len(published)} event(s) already on the topics; "
              + ("docs at /docs, " if settings.intake_docs else "") + "metrics at /metrics)",
              file=sys.stderr, flush=True)
        await server.serve(sockets=[sock])


def run_intake(settings: Settings) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    tokens = parse_tokens(settings.intake_tokens)
    pseudonymiser = pseudonymiser_of(settings)
    sock = bind(settings.intake_host, settings.intake_port, "the intake API")
    try:
        asyncio.run(_serve(settings, tokens, pseudonymiser, sock))
    finally:
        sock.close()
