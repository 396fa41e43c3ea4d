"""`povwatch household show HOUSEHOLD_ID [--json] [--by USER]`: the household as the plan sees it - its members
(names from the case DB's roster, never from Kafka), its latest fact per domain with the department and date and
the fields under their Chinese headers, its income against the county's line, and the open alerts of its OPEN case
(services/cases/profile_view.py). Every look is in the audit log (VIEW_HOUSEHOLD, by the --by user or
"povwatch-cli"); with --by (the user's password, or --as-system), a household outside the user's region is
refused. An unknown household, or a refusal, is one line with exit status 2 (services.cli).
"""
from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "cmd_household"]


def cmd_household(args: argparse.Namespace, settings: Any) -> int:
    from services.casedb.database import open_database
    from services.cases.cli import acting_user
    from services.cases.profile_view import render_profile_text
    from services.cases.store import Cases
    from services.cases.views import to_json

    cases = Cases.from_settings(open_database(settings.case_db), settings)
    try:  # a look --by a user is in the audit log as theirs: only with their password, or --as-system
        view = cases.household_profile(acting_user(args, cases) if args.by else None, args.household_id)
    finally:
        cases.close()
    print(to_json(view) if args.json else render_profile_text(view))
    return 0


def add_parser(sub: Any) -> None:
    """The `household` command."""
    from services.cases.cli import add_actor_options

    p = sub.add_parser("household", help="one household as the plan sees it: members, latest facts per domain, "
                                         "income against the county's line, open alerts")
    p.add_argument("action", choices=["show"])
    p.add_argument("household_id", help="the roster's 户编号")
    p.add_argument("--json", action="store_true", help="the household as one JSON object")
    p.add_argument("--by", help="the case worker looking (povwatch users add): only a household of their region; "
                                "their password is asked for (or --password-file), unless --as-system")
    add_actor_options(p)
    p.set_defaults(func=cmd_household)
