"""The runbook's commands on the command line (docs/runbook.md): `povwatch replay`, `povwatch rebuild monitor`,
`povwatch casedb backup|restore`."""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError

__all__ = ["add_commands"]


def cmd_replay(args: argparse.Namespace, settings: Any) -> int:
    from services.ops.replay import parse_since, render_moves, replay

    if (args.since is None) == (not args.from_beginning):
        raise ConfigError("replay: give exactly one of --since WHEN and --from-beginning")
    since = None if args.from_beginning else parse_since(args.since, settings.zone)
    moves = replay(settings, args.service, since=since, topics=args.topic or (), dry_run=args.dry_run)
    print(render_moves(moves))
    print("dry run: nothing moved" if args.dry_run else
          f"moved: start the {args.service.split('-')[0]} again to read them")
    return 0


def cmd_rebuild(args: argparse.Namespace, settings: Any) -> int:
    from services.ops.replay import rebuild_monitor, render_moves

    done = rebuild_monitor(settings, dry_run=args.dry_run)
    verb = "would delete and recreate" if args.dry_run else "deleted and recreated"
    print(f"{verb}: {', '.join(done.deleted) or 'nothing (none existed)'}")
    print(render_moves(list(done.moves)))
    for topic, count in sorted(done.trimmed.items()):
        print(f"warning: {topic}: {count} messages were already deleted by retention; the rebuilt state lacks them")
    print("dry run: nothing changed" if args.dry_run else
          "rebuilt: start the monitor; it judges every event again (povwatch status shows the lag going down)")
    return 0


def cmd_casedb(args: argparse.Namespace, settings: Any) -> int:
    from services.ops.backup import backup, restore

    if args.action == "backup":
        result = backup(settings.case_db, Path(args.dir), args.keep, dt.datetime.now(dt.UTC))
        shown = " ".join(f"{k} {v}" for k, v in result.counts.items())
        print(f"backup: {result.path} ({result.size} bytes): {shown}")
        if result.pruned:
            print(f"removed {len(result.pruned)} older backup(s): {', '.join(result.pruned)}")
        return 0
    if not args.file:
        raise ConfigError("casedb restore: name the backup file")
    restored = restore(Path(args.file), args.to or settings.case_db)
    shown = " ".join(f"{k} {v}" for k, v in restored.counts.items())
    print(f"restored into {restored.target}: {shown}")
    return 0


def add_commands(sub: Any) -> None:
    """`replay`, `rebuild` and `casedb` on the top-level subparsers of services/cli.py."""
    from services.ops.replay import SERVICE_NAMES

    p = sub.add_parser("replay", help="move a stopped service's consumer group back to a time, so it reads its "
                                      "topics again from there (docs/runbook.md)")
    p.add_argument("service", choices=SERVICE_NAMES,
                   help="monitor: the event topics; casefeed: the alert topics; casefeed-profiles: profiles")
    p.add_argument("--since", help="the first message at or after this time (ISO date or date-time; local time "
                                   "of POVWATCH_TIMEZONE unless an offset is given)")
    p.add_argument("--from-beginning", action="store_true", help="from the oldest message still on the topics")
    p.add_argument("--topic", action="append", help="only this topic (repeatable; default: every topic it reads)")
    p.add_argument("--dry-run", action="store_true", help="print the moves, change nothing")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("rebuild", help="rebuild the monitor's state from the event topics (a lost or corrupted "
                                       "changelog; the monitor stopped)")
    p.add_argument("what", choices=["monitor"])
    p.add_argument("--dry-run", action="store_true", help="print what would be deleted and moved, change nothing")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser("casedb", help="back up the case DB (pg_dump / SQLite backup) or restore a backup into an "
                                      "empty database")
    p.add_argument("action", choices=["backup", "restore"])
    p.add_argument("file", nargs="?", help="with restore: the backup file (.dump or .sqlite)")
    p.add_argument("--dir", default="var/backups", help="with backup: where backups go (default var/backups)")
    p.add_argument("--keep", type=int, default=14, help="with backup: how many backups to keep (default 14)")
    p.add_argument("--to", help="with restore: the empty database to restore into (default POVWATCH_CASE_DB)")
    p.set_defaults(func=cmd_casedb)
