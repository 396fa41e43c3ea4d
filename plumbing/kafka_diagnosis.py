"""Why a local broker node is down, or soon will be: what its own log said last and how full its log dir is
(`povwatch kafka status`; docs/cluster.md, docs/runbook.md "A broker's disk is full").

    crash_line(log_text)   the last ERROR or FATAL message of the broker's last run, if that run did not end in a
                           clean shutdown (a node halted on a failed log dir, a full disk, a bad config); else None
    disk_note(log_dir)     "" or "its log dir <dir> is 97% full (3.1 MiB free of 256.0 MiB)" from 90 % full on

Pure apart from reading the file system; the log is the broker's log4j file (plumbing/kafka_local.py's pattern,
`[time] LEVEL message (logger)`), every start of the broker appending to it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["crash_line", "disk_note", "full_note", "FULL_FROM"]

RUN_STARTS = "Registered `kafka:type=kafka.Log4jController` MBean"  # the first line every start of a broker logs
CLEAN_END = re.compile(r"\] INFO \[BrokerServer id=\d+\] shut down completed")  # what a clean stop logs last
_FAILURE = re.compile(r"^\[[^\]]+\] (?:ERROR|FATAL) (.*?)(?: \([\w.$]+\))?$")
FULL_FROM = 0.90
MESSAGE_CHARS = 300


def crash_line(log_text: str) -> str | None:
    """The last ERROR/FATAL message of the last run in `log_text`, unless that run ended cleanly."""
    start = log_text.rfind(RUN_STARTS)
    run = log_text[start:] if start >= 0 else log_text
    if CLEAN_END.search(run):
        return None
    found = None
    for line in run.splitlines():
        match = _FAILURE.match(line)
        if match:
            found = match.group(1).strip()
    if found is None:
        return None
    return found if len(found) <= MESSAGE_CHARS else found[: MESSAGE_CHARS - 3] + "..."


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def disk_note(log_dir: Path) -> str:
    """A warning when the file system holding `log_dir` is FULL_FROM full or more; "" otherwise or unknown."""
    try:
        st = os.statvfs(log_dir)
    except OSError:
        return ""
    return full_note(log_dir, st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)


def full_note(log_dir: Path, total: int, free: int) -> str:
    """disk_note for a file system of `total` bytes with `free` left."""
    if total <= 0 or (total - free) / total < FULL_FROM:
        return ""
    return f"its log dir {log_dir} is {(total - free) / total:.0%} full ({_mib(free)} free of {_mib(total)})"
