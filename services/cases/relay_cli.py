"""`povwatch relay`: the relay (services/cases/relay.py) on the command line."""
from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from schemas.errors import PovwatchError

__all__ = ["add_command", "cmd_relay"]


def cmd_relay(args: argparse.Namespace, settings: Any) -> int:
    from prometheus_client import start_http_server

    from plumbing import logs
    from plumbing.audit import party_of
    from plumbing.kafka_io import KafkaPublisher
    from services.casedb.database import open_database
    from services.cases.relay import run_relay

    logs.configure()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # our one line per attempt says it
    if args.interval <= 0:
        raise PovwatchError("--interval must be more than 0 seconds")
    if settings.relay_metrics_port:
        try:
            start_http_server(settings.relay_metrics_port)
        except OSError as exc:
            raise PovwatchError(f"cannot serve /metrics on port {settings.relay_metrics_port}: {exc}") from None
    store = open_database(settings.case_db)
    try:
        totals = asyncio.run(run_relay(
            store, bootstrap=settings.bootstrap, group=settings.relay_group, once=args.once, interval=args.interval,
            publisher_factory=lambda: KafkaPublisher(settings.bootstrap, client_id="povwatch-relay"),
            audit=party_of(settings, "casedb")))
    finally:
        store.close()
    print(f"relay: published {totals.published}, failed attempts {totals.failed_attempts}, answers stored "
          f"{totals.answers_stored}, duplicates {totals.answers_duplicate}, skipped {totals.answers_skipped}, "
          f"audit log rows copied {totals.audit_copied}")
    for note in totals.notes:  # `--once`: what it left undone, and why
        print(f"relay: {note}")
    return 0


def add_command(sub: Any) -> None:
    """`relay` on the top-level subparsers of services/cli.py."""
    p = sub.add_parser("relay", help="publish the case DB's outbox (registry.household-status after LABEL / "
                                     "ANNOUNCE_LABEL, comparison requests) and store comparison answers")
    p.add_argument("--once", action="store_true",
                   help="publish what is pending and read the answers there are, then stop (Kafka down: retried)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between passes (default 1)")
    p.set_defaults(func=cmd_relay)
