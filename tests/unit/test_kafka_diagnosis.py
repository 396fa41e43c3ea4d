"""plumbing/kafka_diagnosis.py: what `povwatch kafka status` says of a node that stopped on its own, from the
broker's log4j file, and of a log dir that is nearly full."""
from __future__ import annotations

from pathlib import Path

import pytest

from plumbing.kafka_diagnosis import crash_line, disk_note, full_note

pytestmark = pytest.mark.fast

START = "[2026-12-03 21:26:05,935] INFO Registered `kafka:type=kafka.Log4jController` MBean " \
        "(kafka.utils.Log4jControllerRegistration$)\n"
EARLIER_RUN = START + "[2026-12-03 21:26:09,001] ERROR an old failure (kafka.server.BrokerServer)\n" + \
    "[2026-12-03 21:27:00,000] INFO [BrokerServer id=2] shut down completed (kafka.server.BrokerServer)\n"
FULL = ("[2026-12-03 21:40:11,512] ERROR Error while appending records to events-2 in dir /d/node-2/logs "
        "(org.apache.kafka.storage.internals.log.LogDirFailureChannel)\n"
        "java.io.IOException: No space left on device\n"
        "\tat java.base/sun.nio.ch.FileDispatcherImpl.write0(Native Method)\n"
        "[2026-12-03 21:40:11,530] ERROR Shutdown broker because all log dirs in /d/node-2/logs have failed "
        "(kafka.log.LogManager)\n")


def test_a_run_that_ended_on_errors_names_its_last_error() -> None:
    said = crash_line(EARLIER_RUN + START + FULL)
    assert said == "Shutdown broker because all log dirs in /d/node-2/logs have failed"


def test_a_clean_shutdown_and_a_run_without_errors_name_nothing() -> None:
    assert crash_line(EARLIER_RUN) is None
    assert crash_line(EARLIER_RUN + START + "[2026-12-03 21:30:00,000] INFO Kafka Server started\n") is None
    assert crash_line("") is None


def test_only_the_last_run_counts_and_a_long_message_is_cut() -> None:
    long = "x" * 1000
    text = START + FULL + START + f"[2026-12-03 22:00:00,000] FATAL {long} (kafka.Kafka$)\n"
    said = crash_line(text)
    assert said is not None and said.startswith("xxx") and said.endswith("...") and len(said) == 300


def test_a_log_dir_from_90_percent_full_is_named_with_what_is_left() -> None:
    where = Path("/d/node-2/logs")
    assert full_note(where, 256 << 20, 26 << 20) == ""
    assert full_note(where, 256 << 20, 512 << 10) == (
        "its log dir /d/node-2/logs is 100% full (0.5 MiB free of 256.0 MiB)")
    assert full_note(where, 100 << 20, 10 << 20).startswith("its log dir /d/node-2/logs is 90% full")
    assert full_note(where, 0, 0) == ""


def test_a_log_dir_that_does_not_exist_says_nothing(tmp_path: Path) -> None:
    assert disk_note(tmp_path / "missing") == ""
