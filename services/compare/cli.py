"""The command line of comparison and of the relay: `povwatch compare request|status`, `povwatch relay`,
`povwatch connector compare` (its parser lives with `connector` in services/cli.py). Settings come from the
composition root (services/cli.py); errors the program understands are PovwatchError (one line, exit 2)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plumbing.clock import utc_now
from schemas.errors import BrokerUnavailable, ConfigError, PovwatchError

__all__ = ["add_commands", "cmd_compare", "cmd_connector_compare"]



def cmd_compare(args: argparse.Namespace, settings: Any) -> int:
    from schemas.codec import default_codec
    from services.casedb.database import open_database
    from services.compare.casedb import create_request, progress
    from services.compare.render import progress_json, render_progress

    store = open_database(settings.case_db)
    try:
        if args.action == "status":
            items = progress(store, utc_now())
            print(progress_json(items) if args.json else render_progress(items))
            return 0
        if not args.dept or not args.by:
            raise PovwatchError("usage: povwatch compare request DEPT (--case CASE_ID | --all-monitored) --by USER")
        if (args.case is None) == (not args.all_monitored):
            raise ConfigError("give either --case CASE_ID or --all-monitored")  # before a password is asked for
        by = args.authenticate(args, settings)  # the --by user, after their password
        created = create_request(store, args.dept, case_id=args.case, all_monitored=args.all_monitored, by=by,
                                 now=utc_now(), codec=default_codec())
        published = _publish_one(store, settings, created.outbox_id)
        shown = {"request_id": created.request_id, "department": created.department, "case_id": created.case_id,
                 "persons": created.persons, "households": created.households, "published": published}
        if args.json:
            print(json.dumps(shown, ensure_ascii=False))
        else:
            target = f"case {created.case_id}" if created.case_id is not None else "every monitored household"
            print(f"comparison request {created.request_id} to {created.department}: {created.persons} persons of "
                  f"{created.households} households ({target}); "
                  + ("published" if published else "stored, to be published by `povwatch relay`"))
        return 0
    finally:
        store.close()


def _publish_one(store: Any, settings: Any, outbox_id: int) -> bool:
    """Publish the request's outbox row now; if Kafka cannot be reached it stays for the relay (a warning)."""
    from plumbing.kafka_io import KafkaPublisher
    from services.casedb.outbox import publish_pending

    try:
        asyncio.run(publish_pending(store, lambda: KafkaPublisher(settings.bootstrap, client_id="povwatch-compare"),
                                    utc_now, only=outbox_id))
    except BrokerUnavailable as exc:
        print(f"povwatch: warning: the request is stored but not published ({exc}); `povwatch relay` publishes "
              "it when Kafka is back", file=sys.stderr)
        return False
    return True


def _quiet_kafka_client() -> None:
    """aiokafka logs each failed connection itself; our one line per attempt says it (with the reason)."""
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)


def cmd_connector_compare(args: argparse.Namespace, settings: Any) -> int:
    from prometheus_client import start_http_server

    from connectors.pseudonym import pseudonymiser_of
    from plumbing import kafka_security, logs
    from plumbing.audit import party_of
    from services.compare.config import load_compare_config
    from services.compare.connector import run_compare

    if not args.config or args.dept or args.feed or args.file:
        raise PovwatchError("usage: povwatch connector compare --config FILE")
    config = load_compare_config(Path(args.config))
    pseudonymiser = pseudonymiser_of(settings)
    logs.configure()
    _quiet_kafka_client()
    if config.metrics_port:
        try:
            start_http_server(config.metrics_port)
        except OSError as exc:
            raise PovwatchError(f"cannot serve /metrics on port {config.metrics_port}: {exc}") from None
    with kafka_security.acting_as(config.security or kafka_security.current()):
        totals = asyncio.run(run_compare(config, bootstrap=config.bootstrap or settings.bootstrap,
                                         pseudonymiser=pseudonymiser, zone=settings.zone,
                                         idle_timeout=getattr(args, "timeout", None),
                                         audit=party_of(settings, f"compare.{config.department.department}")))
    print(f"compare {config.department.department}: requests {totals.requests}, answers {totals.answers} "
          f"(found {totals.found}), skipped {totals.skipped}, source errors {totals.source_errors}")
    return 0


def add_commands(sub: Any, *, authenticate: Callable[[argparse.Namespace, Any], str]) -> None:
    """`compare` on the top-level subparsers of services/cli.py (`relay`: services/cases/relay_cli.py).
    `authenticate(args, settings)`: the --by user's name once their password is checked (the case package's)."""
    p = sub.add_parser("compare", help="comparison requests (比对) to departments, and their answers")
    p.add_argument("action", choices=["request", "status"],
                   help="request DEPT (--case CASE_ID | --all-monitored) --by USER: ask a department to compare "
                        "persons; status: every request answered, partly answered or open, and for how long")
    p.add_argument("dept", nargs="?", help="with request: pboc, natural-resources, public-security, farm-machinery "
                                           "or market-regulation")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--case", type=int, help="with request: the members of this case's household")
    target.add_argument("--all-monitored", action="store_true",
                        help="with request: the members of every household 监测中 in the user's region")
    p.add_argument("--by", help="with request: the county or bureau user asking (their password is asked for)")
    p.add_argument("--password-file", help="with request: the --by user's password: the first line of FILE (else: "
                                           "asked on the terminal)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_compare, authenticate=authenticate)
