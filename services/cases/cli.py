"""The case workers' commands (services.cli wires them in): `povwatch case advance|resolve|show`,
`povwatch users add|list|passwd|disable|enable`, `povwatch audit household`, `povwatch alerts ack|resolve`,
`povwatch cases roster`, and the workflow columns of `povwatch cases list --json`.

`case` and `alerts ack|resolve` act as the `--by` user only with that user's password (asked on the terminal, or
the first line of `--password-file FILE`), or - with an explicit `--as-system` - as the operator of this machine
with the user's role and region, recorded in the history and the audit log as "system:USER".

Each prints one line on success (or the view asked for) and, on refusal or bad input, raises a schemas.errors
exception that services.cli prints as one line with exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import json
from pathlib import Path
from typing import Any

from plumbing.clock import utc_now
from schemas.errors import ConfigError, PovwatchError
from services.cases.workflow import Step

__all__ = ["add_parsers", "add_actor_options", "acting_user", "cmd_alert_action", "cmd_cases_roster",
           "cases_list_json", "with_deadlines",
           "render_overdue_table"]


def _cases(settings: Any) -> Any:
    from services.casedb.database import open_database
    from services.cases.store import Cases

    return Cases.from_settings(open_database(settings.case_db), settings)


def _day(text: str | None) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--on {text!r}: a date as YYYY-MM-DD") from None


def _close(cases: Any) -> None:
    cases.close()


def _secret(path: str | None, prompt: str) -> str:
    """The first line of `path`, or what is typed on the terminal (not echoed)."""
    if path:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"--password-file {path}: {exc.strerror or exc}") from None
        return lines[0] if lines else ""
    try:
        return getpass.getpass(prompt)
    except EOFError:
        raise ConfigError("no password given (type it on a terminal, or give --password-file FILE)") from None


def acting_user(args: argparse.Namespace, cases: Any) -> Any:
    """The UserView a command acts as: the --by user after their password, or - with --as-system - the operator
    acting with the user's role and region (recorded as system:USER)."""
    if getattr(args, "as_system", False):
        return dataclasses.replace(cases.user(args.by), system=True)
    user = cases.authenticate(args.by, _secret(args.password_file, f"password for {args.by}: "))
    if user is None:
        raise ConfigError(f"--by {args.by[:64]}: wrong password, or no such active user (or act as the system "
                          "with --as-system)")
    return user


def authenticated_name(args: argparse.Namespace, settings: Any) -> str:
    """The name of the --by user after their password (--password-file, or asked on the terminal): for commands
    of other packages that act as a user (`compare request`); one line and exit 2 when it is wrong."""
    cases = _cases(settings)
    try:
        return str(acting_user(args, cases).name)
    finally:
        _close(cases)


def cmd_case(args: argparse.Namespace, settings: Any) -> int:
    from services.cases.views import render_detail, to_json

    cases = _cases(settings)
    try:
        me = acting_user(args, cases)
        if args.action == "advance":
            if not args.step:
                raise PovwatchError("usage: povwatch case advance CASE_ID STEP --by USER [--note TEXT] [--on DATE] "
                                    "[--authorised] [--override REASON] [--category CAT]")
            detail = cases.advance(me, args.case_id, args.step, on=_day(args.on), note=args.note,
                                   authorised=args.authorised, override=args.override, category=args.category)
            c, h = detail.case, detail.household
            last = detail.history[-1] if detail.history else None
            nxt = ", ".join(a.step for a in detail.allowed) or "none"
            status = f"; household {h.household_id} {h.monitoring_status} {h.category}" if h is not None else ""
            print(f"case {c.id}: {args.step.upper()} on {last.on_day if last else '?'} by {me.actor}{status}; "
                  f"case {c.status}; next: {nxt}")
        elif args.action == "resolve":
            if not args.note:
                raise PovwatchError("usage: povwatch case resolve CASE_ID --by USER --note TEXT")
            detail = cases.resolve_case(me, args.case_id, args.note)
            resolved = sum(a.status == "RESOLVED" for a in detail.alerts)
            print(f"case {detail.case.id}: resolved by {me.actor} ({resolved} alert(s) resolved); case "
                  f"{detail.case.status}")
        else:
            detail = cases.case_detail(me, args.case_id)
            print(to_json(detail) if args.json else render_detail(detail))
    finally:
        _close(cases)
    return 0


def _password(args: argparse.Namespace) -> str:
    if args.password_file:
        return _secret(args.password_file, "")
    first = _secret(None, f"password for {args.name}: ")
    if _secret(None, "again: ") != first:
        raise ConfigError("the two passwords differ")
    return first


def cmd_users(args: argparse.Namespace, settings: Any) -> int:
    from services.cases.users import check_name, check_password, check_region, parse_role

    if args.action == "list":
        return _list_users(settings, args.json)
    if args.action in ("passwd", "disable", "enable"):
        return _change_user(args, settings)
    if not args.name or not args.role or not args.region:
        raise PovwatchError("usage: povwatch users add NAME --role ROLE --region CODE [--password-file FILE]")
    role = parse_role(args.role)   # bad input is refused before the password is asked for
    check_name(args.name)
    check_region(role, args.region)
    password = check_password(_password(args))
    cases = _cases(settings)
    try:
        user = cases.add_user(args.name, role.value, args.region, password)
    finally:
        _close(cases)
    print(f"user {user.name} added: {user.role} of {user.region}")
    return 0


def _change_user(args: argparse.Namespace, settings: Any) -> int:
    """`users passwd NAME` (a new password), `users disable NAME`, `users enable NAME`; the first two end every
    desk session of the user at once (the sessions are the case DB's: every desk process sees it)."""
    from services.cases.users import check_password

    if not args.name:
        raise PovwatchError(f"usage: povwatch users {args.action} NAME"
                            + (" [--password-file FILE]" if args.action == "passwd" else ""))
    cases = _cases(settings)
    try:
        if args.action == "passwd":
            ended = cases.set_password(args.name, check_password(_password(args)))
            print(f"user {args.name}: password changed; {ended} desk session(s) ended")
        else:
            ended = cases.set_active(args.name, args.action == "enable")
            print(f"user {args.name}: {args.action}d" + ("" if args.action == "enable"
                                                        else f"; {ended} desk session(s) ended"))
    finally:
        _close(cases)
    return 0


def _list_users(settings: Any, as_json: bool) -> int:
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from services.casedb.database import open_database
    from services.casedb.models import User

    store = open_database(settings.case_db)
    try:
        with Session(store.engine) as session:
            users = [(u.name, u.role, u.region, u.active) for u in session.scalars(select(User).order_by(User.name))]
    finally:
        store.close()
    if as_json:
        print(json.dumps([{"name": n, "role": r, "region": g, "active": a} for n, r, g, a in users]))
    else:
        for n, r, g, a in users:
            print(f"{n:<20} {r:<9} {g:<12}" + ("" if a else " (deactivated)"))
    return 0


def cmd_audit(args: argparse.Namespace, settings: Any) -> int:
    """`audit household ID`: the case DB's rows, then the trail's exchanges (services/audit_trail.py);
    `audit verify` and `audit export FILE`: the trail's chains."""
    import asyncio

    from services import audit_trail
    from services.cases.views import render_audit, to_json

    if args.what == "verify":
        return audit_trail.cmd_verify(args, settings)
    if not args.target:
        raise PovwatchError(f"usage: povwatch audit {args.what} " + ("FILE" if args.what == "export" else "ID"))
    if args.what == "export":
        return audit_trail.cmd_export(args, settings)
    cases = _cases(settings)
    try:
        entries = cases.audit_for_household(args.target)
    finally:
        _close(cases)
    if args.case_db_only:
        print(to_json(entries) if args.json else render_audit(entries))
        return 0
    exchanges = audit_trail.household_exchanges(asyncio.run(audit_trail.read_trail(settings.bootstrap)), args.target)
    if args.json:
        print(json.dumps({"case_db": json.loads(to_json(entries)), "exchanges": exchanges}, ensure_ascii=False,
                         indent=2))
    else:
        print(render_audit(entries) + "\n\nexchanges on the audit trail (audit.events):\n"
              + audit_trail.render_exchanges(exchanges))
    return 0


def cmd_alert_action(args: argparse.Namespace, settings: Any) -> int:
    """`povwatch alerts ack ALERT_ID --by USER` / `povwatch alerts resolve ALERT_ID --by USER --note TEXT`."""
    if args.alert_id is None or not args.by or (args.action == "resolve" and not args.note):
        raise PovwatchError(f"usage: povwatch alerts {args.action} ALERT_ID --by USER"
                            + (" --note TEXT" if args.action == "resolve" else ""))
    cases = _cases(settings)
    try:
        me = acting_user(args, cases)
        if args.action == "ack":
            alert = cases.acknowledge_alert(me, args.alert_id)
        else:
            alert = cases.resolve_alert(me, args.alert_id, args.note)
    finally:
        _close(cases)
    who = alert.resolved_by if alert.status == "RESOLVED" else alert.acknowledged_by
    print(f"alert {alert.id} ({alert.rule} {alert.severity}) of case {alert.case_id}: {alert.status} by {who}")
    return 0


def cmd_cases_roster(args: argparse.Namespace, settings: Any) -> int:
    from services.cases.views import render_counts, to_json

    if not args.file:
        raise PovwatchError("usage: povwatch cases roster FILE")
    cases = _cases(settings)
    try:
        counts = cases.import_roster(Path(args.file))
    finally:
        _close(cases)
    print(to_json(counts) if args.json else render_counts(counts))
    return 0


def with_deadlines(store: Any, cases: list[Any], settings: Any, *, overdue_only: bool = False,
                   today: dt.date | None = None) -> list[Any]:
    """`povwatch cases list [--overdue]`: the CaseViews (services.casedb.store) with each alert's deadline filled
    in (due_on, overdue_days; services/cases/deadlines.py, POVWATCH_CASE_VERIFY_DAYS); with `overdue_only`, only
    the cases with an overdue alert. `today`: the prefecture's date (default: now in Settings.zone)."""
    import dataclasses

    from connectors.framework import local_today
    from services.cases.overdue import deadlines

    day = today or local_today(utc_now(), settings.zone)
    due = store.run(lambda session: deadlines(session, today=day, verify_days=settings.case_verify_days,
                                              zone=settings.zone), "read the alerts' deadlines")
    out = []
    for case in cases:
        alerts = tuple(dataclasses.replace(a, due_on=due[a.id][0], overdue_days=due[a.id][1]) if a.id in due else a
                       for a in case.alerts)
        if overdue_only and not any(a.overdue_days for a in alerts):
            continue
        out.append(dataclasses.replace(case, alerts=alerts))
    return out


def render_overdue_table(cases: list[Any]) -> str:
    """`povwatch cases list --overdue`: one line per overdue alert, the most overdue first."""
    from plumbing.table import render_table

    rows = sorted(((a.overdue_days, c, a) for c in cases for a in c.alerts if a.overdue_days),
                  key=lambda row: (-row[0], row[1].id, row[2].id))
    table = render_table(("CASE", "SUBJECT", "REGION", "ALERT", "RULE", "SEVERITY", "OPENED", "DUE", "OVERDUE",
                          "DEPARTMENTS"),
                         [(str(c.id), c.household_or_region, c.village_code, str(a.id), a.rule, a.severity,
                           a.opened_at.strftime("%Y-%m-%dT%H:%MZ"), str(a.due_on), f"{days} day(s)",
                           "、".join(a.departments)) for days, c, a in rows])
    return table + ("\n(no overdue alerts)" if not rows else "")


def cases_list_json(settings: Any, cases_json: str) -> str:
    """`povwatch cases list --json`: each case gains its workflow, step and household status."""
    cases = _cases(settings)
    try:
        steps = cases.steps_of_cases()
    finally:
        _close(cases)
    listed = json.loads(cases_json)
    for case in listed:
        workflow, step, status = steps.get(case["id"], (None, None, None))
        case.update(workflow=workflow, step=step, household_status=status)
    return json.dumps(listed, ensure_ascii=False, indent=2)


def add_actor_options(p: argparse.ArgumentParser) -> None:
    """--password-file and --as-system: how a command proves it acts as its --by user."""
    p.add_argument("--password-file", help="the --by user's password: the first line of FILE (else: asked on the "
                                           "terminal)")
    p.add_argument("--as-system", action="store_true",
                   help="act as this machine's operator with the --by user's role and region, without their "
                        "password; recorded as system:USER in the case history and the audit log")


def add_parsers(sub: Any) -> None:
    """The `case`, `users` and `audit` commands."""
    p = sub.add_parser("case", help="one case: take a workflow step, resolve it, show it",
                       description="Steps: " + ", ".join(s.value for s in Step) + ". Refused steps exit 2 with "
                                   "one line saying which steps are allowed now and why.")
    p.add_argument("action", choices=["advance", "resolve", "show"])
    p.add_argument("case_id", type=int)
    p.add_argument("step", nargs="?", help="with advance: the step taken, e.g. APPLY")
    p.add_argument("--by", required=True, help="the user taking the step (povwatch users add); their password is "
                                               "asked for (or --password-file), unless --as-system")
    add_actor_options(p)
    p.add_argument("--note", help="why (recorded in the case's history)")
    p.add_argument("--on", help="the day the step happened, YYYY-MM-DD (default: today)")
    p.add_argument("--authorised", action="store_true",
                   help="at APPLY: the household's signed authorisation to query deposits, vehicles and housing "
                        "is on file")
    p.add_argument("--override", metavar="REASON",
                   help="at DATA_COMPARE: a county user completes it without every department's answer")
    p.add_argument("--category", help="at LABEL: UNSTABLE_LIFTED, MARGINAL or SUDDEN_HARDSHIP")
    p.add_argument("--json", action="store_true", help="with show: the case page as JSON")
    p.set_defaults(func=cmd_case)

    p = sub.add_parser("users", help="case workers: add one (role and region), list them, change a password, "
                                     "disable or enable one (passwd and disable end the user's desk sessions)")
    p.add_argument("action", choices=["add", "list", "passwd", "disable", "enable"])
    p.add_argument("name", nargs="?")
    p.add_argument("--role", help="village, township, county or bureau")
    p.add_argument("--region", help="12-digit village, 9-digit township, 6-digit county code, or 6527 (bureau)")
    p.add_argument("--password-file", help="read the password from the first line of FILE (else: the terminal)")
    p.add_argument("--json", action="store_true", help="with list: JSON")
    p.set_defaults(func=cmd_users)

    p = sub.add_parser("audit", help="who looked at or acted on a household's data, and when; verify the audit "
                                     "trail's hash chains (docs/security.md)")
    p.add_argument("what", choices=["household", "verify", "export"],
                   help="household ID: the case DB's audit rows and the exchanges on the trail; verify: every "
                        "party's chain, exit 1 on a break; export FILE: a copy of the trail as JSON lines")
    p.add_argument("target", nargs="?", help="the household id (household) or the file (export)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--from-file", metavar="FILE", help="with verify: check a copy written by `audit export`")
    p.add_argument("--case-db-only", action="store_true", help="with household: the case DB's rows only (no Kafka)")
    p.set_defaults(func=cmd_audit)
