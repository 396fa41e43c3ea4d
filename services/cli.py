"""The `povwatch` command line (docs/architecture.md, "Command line"). The composition root of every process:
settings are read once here and passed down. Errors the program understands print one line, exit 2."""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from schemas.errors import PovwatchError

__all__ = ["main"]


def _summary_text(summary: Any) -> str:
    s = summary.as_dict()
    lines = [
        f"{s['department']} {s['feed']} {s['file']} ({s['encoding']})",
        f"  read {s['read']}  published {s['published']}  rejected {s['rejected']}  duplicates {s['duplicates']}"
        + (f"  (blank lines ignored: {s['blank_lines']})" if s["blank_lines"] else "")
        + (f"  (+{s['extra_messages']} household records)" if s["extra_messages"] else ""),
    ]
    for reject in s["rejects"]:
        lines.append(f"  row {reject['row']}: " + "; ".join(reject["reasons"]))
    if s.get("rejects_not_listed"):
        lines.append(f"  ... and {s['rejects_not_listed']:,} more rejected rows (all in the dead-letter topic)")
    return "\n".join(lines)


def _roster_text(summary: Any) -> str:
    """A roster load: rows (read = published + unchanged + rejected + duplicates), then each topic's keys."""
    s = summary.as_dict()
    lines = [
        f"{s['department']} {s['feed']} {s['file']} ({s['encoding']}), {s['mode']}",
        f"  read {s['read']}  published {s['published']}  unchanged {s['unchanged']}  rejected {s['rejected']}  "
        f"duplicates {s['duplicates']}  ({s['invariant']})"
        + (f"  (blank lines ignored: {s['blank_lines']})" if s["blank_lines"] else ""),
    ]
    for topic in ("persons", "households"):
        c = s[topic]
        line = (f"  {topic + ':':<12}added {c['added']}  changed {c['changed']}  removed {c['removed']}  "
                f"unchanged {c['unchanged']}")
        if c["kept_row_rejected"]:
            line += f"  kept, row rejected {c['kept_row_rejected']}"
        if c["kept_not_in_file"]:
            line += f"  kept, not in file (--delta) {c['kept_not_in_file']}"
        lines.append(line)
    for reject in s["rejects"]:
        lines.append(f"  row {reject['row']}: " + "; ".join(reject["reasons"]))
    return "\n".join(lines)


def _print_summary(summary: Any, as_json: bool) -> None:
    print(json.dumps(summary.as_dict(), ensure_ascii=False) if as_json else _summary_text(summary))


def cmd_kafka(args: argparse.Namespace, settings: Any) -> int:
    from plumbing import kafka_cluster

    if args.action == "tool":
        from plumbing.kafka_tools import run_tool

        return run_tool(settings, args.tool, args.tool_args)
    if args.action == "up":
        print(kafka_cluster.up(settings, brokers=args.brokers, secure=args.secure))
        return 0
    action: Callable[[Any], str] = {"down": kafka_cluster.down, "status": kafka_cluster.status}[args.action]
    print(action(settings))
    return 0


def cmd_status(args: argparse.Namespace, settings: Any) -> int:
    from services.status import render_json, render_text
    from services.status_probe import probe

    report = probe(settings)
    print(render_json(report) if args.json else render_text(report))
    return 0


def cmd_topics(args: argparse.Namespace, settings: Any) -> int:
    from plumbing.kafka_io import ensure_topics, project_topics

    created = asyncio.run(ensure_topics(settings.bootstrap, settings.partitions))
    print(f"{len(project_topics())} topics present on {settings.bootstrap}; created: "
          + (", ".join(created) if created else "none"))
    return 0


def cmd_roster(args: argparse.Namespace, settings: Any) -> int:
    """The topics, then the case DB's households and members (services/roster_casedb.py: exit 0, or 3 when the
    topics are published and the configured case DB could not be refreshed)."""
    from services import roster_casedb
    from services.ingest import load_roster

    summary = asyncio.run(load_roster(settings, Path(args.file), delta=args.delta))
    case_db = roster_casedb.refresh(settings, Path(args.file))
    if args.json:
        print(json.dumps({**summary.as_dict(), "case_db": case_db.as_dict()}, ensure_ascii=False))
    else:
        print(_roster_text(summary))
    if not case_db.refreshed:  # the one line that says why, and how to do it later
        print(f"povwatch: {case_db.line}", file=sys.stderr)
    elif not args.json:
        print(f"  {case_db.line}")
    return roster_casedb.PARTIAL_EXIT if case_db.failed else 0


def cmd_connector(args: argparse.Namespace, settings: Any) -> int:
    if args.action == "compare":
        from services.compare.cli import cmd_connector_compare

        return cmd_connector_compare(args, settings)
    if args.action == "watch":
        from services.watch.service import run_watch

        if not args.config or args.dept or args.feed or args.file:
            raise PovwatchError("usage: povwatch connector watch --config FILE")
        return run_watch(settings, Path(args.config))
    if not (args.dept and args.feed and args.file):
        raise PovwatchError("usage: povwatch connector run DEPT FEED FILE [FILE ...] [--json]")
    from services.ingest import run_connector, run_connector_files

    if len(args.file) == 1:
        _print_summary(asyncio.run(run_connector(settings, args.dept, args.feed, Path(args.file[0]))), args.json)
        return 0
    files = [(args.feed, Path(f)) for f in args.file]  # several files: one producer, in the order given
    for summary in asyncio.run(run_connector_files(settings, args.dept, files)):
        _print_summary(summary, args.json)
    return 0


def cmd_monitor(args: argparse.Namespace, settings: Any) -> int:
    if args.action == "unmatched":
        from services.monitor.unmatched import list_unmatched, render_unmatched, unmatched_json

        rows = asyncio.run(list_unmatched(settings))
        print(unmatched_json(rows) if args.json else render_unmatched(rows))
        return 0
    from services.monitor.app import run_monitor

    settings.checked_key()  # refuse the development key outside development mode, like every process
    run_monitor(settings)
    return 0


def cmd_casefeed(args: argparse.Namespace, settings: Any) -> int:
    from prometheus_client import start_http_server

    from plumbing import logs
    from services.casefeed.service import run_casefeed

    logs.configure()  # one line per record, tracebacks included
    try:
        start_http_server(settings.casefeed_metrics_port)
    except OSError as exc:
        raise PovwatchError(f"cannot serve /metrics on port {settings.casefeed_metrics_port}: {exc}") from None
    async def until_stopped() -> Any:
        stop = asyncio.Event()  # SIGTERM (systemd, Kubernetes) or Ctrl-C: finish the batch in flight, then exit 0
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        return await run_casefeed(settings, idle_timeout=args.timeout, stop=stop)

    totals = asyncio.run(until_stopped())
    print(f"casefeed: consumed {totals.consumed}, evidence {totals.evidence}, cases opened {totals.cases_opened}, "
          f"duplicates {totals.duplicates}, updated {totals.updated}, dead letters {totals.dead_letters}, "
          f"sanitised {totals.sanitised}, "
          f"case DB retries {totals.db_retries}")
    return 0


def cmd_intake(args: argparse.Namespace, settings: Any) -> int:
    from services.intake.server import run_intake

    run_intake(settings)
    return 0


def cmd_desk(args: argparse.Namespace, settings: Any) -> int:
    from services.desk.server import run_desk

    run_desk(settings)
    return 0


def cmd_alerts(args: argparse.Namespace, settings: Any) -> int:
    if args.action != "tail":
        from services.cases.cli import cmd_alert_action

        return cmd_alert_action(args, settings)
    from plumbing.kafka_io import read_topic
    from schemas.codec import default_codec
    from schemas.errors import DecodeError
    from schemas.topics import ALERTS_HOUSEHOLD, ALERTS_REGIONAL
    from services.alerts_view import alert_json, alert_line

    codec = default_codec()

    async def tail() -> None:
        async for rec in read_topic(settings.bootstrap, [ALERTS_HOUSEHOLD, ALERTS_REGIONAL],
                                    from_beginning=args.from_beginning, idle_timeout=args.timeout):
            try:
                record = codec.decode(rec.value).record
            except DecodeError as exc:
                print(f"povwatch: skipped undecodable message {rec.topic}[{rec.partition}]@{rec.offset}: {exc}",
                      file=sys.stderr)
                continue
            print(alert_json(rec.topic, record) if args.json else alert_line(rec.topic, record), flush=True)

    asyncio.run(tail())
    return 0


def _authenticated_name(args: argparse.Namespace, settings: Any) -> str:
    """`compare request --by USER`: the user after their password (the case package checks it)."""
    from services.cases.cli import authenticated_name

    return authenticated_name(args, settings)


def cmd_cases(args: argparse.Namespace, settings: Any) -> int:
    from services.casedb.database import open_database
    from services.cases.listing import cases_to_json, render_cases_table

    if args.action == "roster":
        from services.cases.cli import cmd_cases_roster

        return cmd_cases_roster(args, settings)
    if args.action == "publish-status":
        import datetime as dt

        from schemas.codec import default_codec
        from services.cases.status_backfill import queue_decided_statuses

        store = open_database(settings.case_db)
        try:
            written = queue_decided_statuses(store, default_codec(), dt.datetime.now(dt.UTC))
        finally:
            store.close()
        print(f"{written} household status(es) queued for registry.household-status; `povwatch relay` publishes them")
        return 0
    from services.cases.cli import render_overdue_table, with_deadlines

    store = open_database(settings.case_db)
    try:
        cases = with_deadlines(store, store.list_cases(), settings, overdue_only=args.overdue)
    finally:
        store.close()
    if args.json:
        from services.cases.cli import cases_list_json

        print(cases_list_json(settings, cases_to_json(cases)))
    else:
        print(render_overdue_table(cases) if args.overdue else render_cases_table(cases))
    return 0


def cmd_feeds(args: argparse.Namespace, settings: Any) -> int:
    from connectors.describe import catalogue, catalogue_json, find, render_catalogue, write_template

    if args.action == "list":
        entries = catalogue()
        print(catalogue_json(entries) if args.json else render_catalogue(entries))
        return 0
    if args.action == "status":
        return _feeds_status(args, settings)
    if args.dept is None or args.feed is None:
        raise PovwatchError("usage: povwatch feeds template DEPT FEED [--xlsx] [--out FILE]")
    spec = find(args.dept, args.feed)
    out = Path(args.out or f"{spec.department}-{spec.feed}.{'xlsx' if args.xlsx else 'csv'}")
    print(f"wrote {write_template(spec, out, xlsx=args.xlsx)} ({len(spec.columns)} columns)")
    return 0


def _feeds_status(args: argparse.Namespace, settings: Any) -> int:
    """Each feed against deploy/feeds-calendar.toml; exit 1 when one is overdue (for a cron job or a check)."""
    import datetime as dt

    from services.feed_status import calendar_of, feed_statuses, render_statuses

    calendar = calendar_of(settings)
    statuses = asyncio.run(feed_statuses(settings.bootstrap, calendar, dt.datetime.now(dt.UTC), settings.zone))
    if args.json:
        print(json.dumps([{"department": s.department, "feed": s.feed, "topic": s.topic, "cadence": s.cadence,
                           "last_event": s.last_seen.isoformat() if s.last_seen else None,
                           "due": s.due.isoformat() if s.due else None, "overdue": s.overdue, "state": s.state}
                          for s in statuses], ensure_ascii=False, indent=2))
    else:
        print(render_statuses(statuses))
    return 1 if any(s.overdue for s in statuses) else 0


def cmd_rules(args: argparse.Namespace, settings: Any) -> int:
    from services.monitor.ruledocs import render_rules_json, render_rules_text

    rules_file = str(settings.rules_file) if settings.rules_file is not None else None
    print(render_rules_json(settings.rules, rules_file) if args.json else render_rules_text(settings.rules, rules_file))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Any) -> int:
    from services.demo.run import run_demo

    return run_demo(settings, households=args.households, workdir=Path(args.dir), keep_running=args.keep_running,
                    secure=args.secure)


def _feeds_epilog() -> str:
    """The feeds a connector runs, from the catalogue (schemas/catalog.py): DEPT FEED title, links by."""
    from schemas.catalog import EVENT_FEEDS

    width = max(len(f"{f.department} {f.feed}") for f in EVENT_FEEDS)
    lines = [f"  {f'{f.department} {f.feed}':<{width}}  {f.title} (links by {f.link})" for f in EVENT_FEEDS]
    return "feeds (DEPT FEED; `povwatch feeds list` shows their columns):\n" + "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="povwatch", description="Poverty-relapse monitoring data hub (防返贫监测)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("kafka", help="local Apache Kafka broker and Kafka's tools (fetched from Maven Central on "
                                     "first use)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("up", "start the local broker"), ("down", "stop the broker this data dir started"),
                         ("status", "is the local broker running?")):
        a = actions.add_parser(action, help=text)
        a.set_defaults(func=cmd_kafka)
        if action == "up":
            a.add_argument("--secure", action="store_true", help="TLS with client certificates from the CA in "
                           "POVWATCH_PKI_DIR, ACLs, `admin` the super user; no plaintext port (docs/security.md)")
            a.add_argument("--brokers", type=int, default=1, metavar="N", help="a cluster of N KRaft nodes on "
                           "ports P, P+2, ... (P from POVWATCH_BOOTSTRAP; controllers one above), replication factor "
                           "min(3, N), min.insync.replicas 2 from three on (docs/cluster.md)")
    from plumbing.kafka_tools import TOOLS, tool_name

    t = actions.add_parser("tool", help="run one of Kafka's command-line tools, e.g. kafka-topics --list",
                           description="Runs Kafka's own tool (bin/NAME.sh of the distribution) on the cached jars; "
                                       "--bootstrap-server POVWATCH_BOOTSTRAP is added unless given. Tools: "
                                       + ", ".join(sorted(TOOLS)))
    t.add_argument("tool", metavar="NAME", type=tool_name, help="e.g. kafka-topics, kafka-consumer-groups")
    t.add_argument("tool_args", metavar="ARGS", nargs=argparse.REMAINDER, help="passed to the tool as they are")
    t.set_defaults(func=cmd_kafka)

    p = sub.add_parser("status", help="one look for the operator: broker, topics, consumer lag, monitor")
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("topics", help="create every topic povwatch uses")
    p.add_argument("action", choices=["ensure"])
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("roster", help="publish the roster of monitored households (the file is the full snapshot) "
                                      "and refresh the case DB's households and members when one is configured",
                       epilog="exit status: 0 published (and the case DB refreshed, or none configured); 3 published, "
                              "but the configured case DB could not be refreshed (run `povwatch cases roster FILE` "
                              "later); 2 nothing published")
    p.add_argument("action", choices=["load"])
    p.add_argument("file", help="the roster export: every monitored person; who is not in it is removed")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--delta", action="store_true",
                   help="upsert the file's records only; remove nobody (the file is a partial update)")
    p.set_defaults(func=cmd_roster)

    p = sub.add_parser("connector", help="run a department connector on one file, or as a service (watch)",
                       epilog=_feeds_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["run", "watch", "compare"],
                   help="run DEPT FEED FILE: one file; watch --config FILE: drop folders and SQL sources until "
                        "stopped (SIGTERM/SIGINT)")
    p.add_argument("dept", nargs="?", help="department slug, e.g. medical-security")
    p.add_argument("feed", nargs="?", help="feed name, e.g. hospitalization")
    p.add_argument("file", nargs="*", help="CSV (UTF-8, UTF-8 BOM, GBK/GB18030) or XLSX export; with run, "
                                           "several files of the feed (e.g. the months of a year) go through one "
                                           "producer, in the order given, each counted as if run alone")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--config", help="with watch: the department's TOML file (deploy/connectors/ has examples)")
    p.add_argument("--timeout", type=float, default=None,
                   help="with compare: stop after SECONDS without a request (default: run until stopped)")
    p.set_defaults(func=cmd_connector)

    p = sub.add_parser("monitor", help="run the stream processor; `monitor unmatched` lists events nobody matched")
    p.add_argument("action", nargs="?", choices=["run", "unmatched"], default="run",
                   help="run (default): process events until stopped; unmatched: list events whose person or "
                        "household did not reach the registry within the grace period")
    p.add_argument("--json", action="store_true", help="with unmatched: one JSON array")
    p.set_defaults(func=cmd_monitor)

    p = sub.add_parser("casefeed", help="consume alerts into the case DB")
    p.add_argument("--timeout", type=float, default=None, help="stop after SECONDS without a new alert")
    p.set_defaults(func=cmd_casefeed)

    p = sub.add_parser("intake", help="serve the intake API (self-declarations, cadre visits, social clues) on "
                                      "POVWATCH_INTAKE_HOST:POVWATCH_INTAKE_PORT (127.0.0.1:8088)")
    p.set_defaults(func=cmd_intake)

    p = sub.add_parser("desk", help="serve the case workers' web desk on POVWATCH_DESK_HOST:POVWATCH_DESK_PORT "
                                    "(127.0.0.1:8089)")
    p.set_defaults(func=cmd_desk)

    p = sub.add_parser("alerts", help="print alerts for the bureau")
    p.add_argument("action", choices=["tail", "ack", "resolve"],
                   help="tail: print alerts as they come; ack ALERT_ID --by USER: acknowledge a case's alert; "
                        "resolve ALERT_ID --by USER --note TEXT: resolve it")
    p.add_argument("alert_id", nargs="?", type=int, help="with ack/resolve: the alert's id (povwatch case show)")
    p.add_argument("--by", help="with ack/resolve: the user (their password is asked for, or --password-file)")
    p.add_argument("--note", help="with resolve: why")
    from services.cases.cli import add_actor_options

    add_actor_options(p)  # --password-file, --as-system
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest alert (default: new ones)")
    p.add_argument("--timeout", type=float, default=None, help="stop after SECONDS without a new alert")
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("cases", help="show the case DB; import the bureau's roster into it (names stay there)")
    p.add_argument("action", choices=["list", "roster", "publish-status"],
                   help="publish-status: queue every labelled household's decided status for "
                        "registry.household-status (once, after upgrading; docs/casework.md)")
    p.add_argument("file", nargs="?", help="with roster: the bureau's roster export (as for povwatch roster load)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--overdue", action="store_true",
                   help="with list: only cases with an alert not acknowledged within POVWATCH_CASE_VERIFY_DAYS days "
                        "(default 15) of its opening, and how many days overdue")
    p.set_defaults(func=cmd_cases)

    from services.cases.cli import add_parsers as add_case_parsers

    add_case_parsers(sub)  # case advance|resolve|show, users add|list, audit household

    from services.cases.report_cli import add_parser as add_report_parser

    add_report_parser(sub)  # report monthly|quarterly|annual

    from services.cases.screening_cli import add_parser as add_screening_parser

    add_screening_parser(sub)  # screening open quarterly|annual, screening status

    from services.cases.household_cli import add_parser as add_household_parser

    add_household_parser(sub)  # household show

    p = sub.add_parser("feeds", help="the feed catalogue; templates with the right headers for data officers; "
                                     "status: each feed's last event against its calendar (exit 1 if one is overdue)")
    p.add_argument("action", choices=["list", "template", "status"])
    p.add_argument("dept", nargs="?", help="with template: department slug, e.g. medical-security")
    p.add_argument("feed", nargs="?", help="with template: feed name, e.g. hospitalization")
    p.add_argument("--json", action="store_true", help="with list or status: JSON")
    p.add_argument("--xlsx", action="store_true", help="with template: write XLSX instead of CSV (UTF-8, BOM)")
    p.add_argument("--out", help="with template: the file to write (default DEPT-FEED.csv / .xlsx)")
    p.set_defaults(func=cmd_feeds)

    p = sub.add_parser("rules", help="the risk rules: feeds, conditions and the thresholds in force (docs/rules.md)")
    p.add_argument("action", choices=["list"])
    p.add_argument("--json", action="store_true", help="one JSON object: rules, thresholds, defaults, rules file")
    p.set_defaults(func=cmd_rules)

    p = sub.add_parser("demo", help="generate a synthetic Bortala population and run everything on it")
    p.add_argument("--households", type=int, default=3000)
    p.add_argument("--dir", default="var/demo", help="where the demo writes its files (default var/demo)")
    p.add_argument("--keep-running", action="store_true", help="leave the demo's broker running at the end")
    p.add_argument("--secure", action="store_true", help="on a secured broker (TLS, ACLs), every party on its own "
                   "certificate (docs/security.md)")
    p.set_defaults(func=cmd_demo)

    from services.cases.relay_cli import add_command as add_relay_command
    from services.compare.cli import add_commands as add_compare_commands

    add_compare_commands(sub, authenticate=_authenticated_name)  # compare request|status
    from services.access.cli import add_commands as add_access_commands

    add_access_commands(sub)  # pki init|issue|list|revoke, acl apply|list
    add_relay_command(sub)

    from services.ops.cli import add_commands as add_ops_commands

    add_ops_commands(sub)  # replay, rebuild monitor, casedb backup|restore (docs/runbook.md)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from plumbing.settings import load_settings

        settings = load_settings()
        from plumbing import kafka_security

        kafka_security.configure(settings)  # every Kafka client of this process: plaintext, or TLS as this party
        code: int = args.func(args, settings)
        return code
    except PovwatchError as exc:
        print(f"povwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
