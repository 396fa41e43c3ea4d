"""`povwatch kafka tool NAME ARGS...`: the command line passes the arguments through and adds the bootstrap."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from plumbing.kafka_tools import TOOLS, tool_command, tool_name
from services.cli import build_parser

JAVA, CP, LOG4J2, BOOT = "/usr/bin/java", "/cache/4.1.1/libs/*", Path("/cache/4.1.1/tools-log4j2.properties"), "h:1"
PREFIX = [JAVA, "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J2}", "-cp", CP]


def test_names_as_bin_spells_them_with_or_without_sh() -> None:
    assert tool_name("kafka-topics") == tool_name("kafka-topics.sh") == "kafka-topics"
    with pytest.raises(argparse.ArgumentTypeError, match="unknown Kafka tool 'kafka-topic'; known: kafka-acls, "):
        tool_name("kafka-topic")


def test_the_two_usual_calls() -> None:
    assert tool_command(JAVA, CP, LOG4J2, "kafka-topics", ["--describe", "--topic", "events.x.y"], BOOT) == [
        *PREFIX, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server", BOOT, "--describe", "--topic",
        "events.x.y"]
    args = ["--bootstrap-server", "127.0.0.1:9092", "--describe", "--group", "povwatch-monitor"]
    assert tool_command(JAVA, CP, LOG4J2, "kafka-consumer-groups", args, BOOT) == [
        *PREFIX, "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", *args]


@pytest.mark.parametrize("given", [["--bootstrap-server=other:9"], ["--bootstrap-controller", "c:9093"]])
def test_a_server_named_in_the_arguments_wins(given: list[str]) -> None:
    command = tool_command(JAVA, CP, LOG4J2, "kafka-metadata-quorum", [*given, "describe", "--status"], BOOT)
    assert command[len(PREFIX) + 1:] == [*given, "describe", "--status"]


def test_subcommand_tools_and_tools_without_a_server() -> None:
    assert tool_command(JAVA, CP, LOG4J2, "kafka-cluster", ["cluster-id"], BOOT)[len(PREFIX):] == [
        "org.apache.kafka.tools.ClusterTool", "cluster-id", "--bootstrap-server", BOOT]
    assert tool_command(JAVA, CP, LOG4J2, "kafka-cluster", ["--help"], BOOT)[len(PREFIX) + 1:] == ["--help"]
    assert tool_command(JAVA, CP, LOG4J2, "kafka-dump-log", ["--files", "x.log"], BOOT)[len(PREFIX):] == [
        "kafka.tools.DumpLogSegments", "--files", "x.log"]


def test_the_command_line_keeps_the_tools_options_for_the_tool() -> None:
    args = build_parser().parse_args(["kafka", "tool", "kafka-consumer-groups.sh", "--describe", "--group", "g",
                                      "--help"])
    assert (args.action, args.tool, args.tool_args) == ("tool", "kafka-consumer-groups", ["--describe", "--group",
                                                                                          "g", "--help"])
    assert build_parser().parse_args(["kafka", "up"]).action == "up"


def test_the_usual_tools_are_there() -> None:
    assert {"kafka-topics", "kafka-consumer-groups", "kafka-console-consumer", "kafka-get-offsets",
            "kafka-configs"} <= set(TOOLS)


def test_a_client_properties_file_goes_with_the_tool_s_own_option() -> None:
    config = Path("/tmp/client.properties")
    topics = tool_command(JAVA, CP, LOG4J2, "kafka-topics", ["--list"], BOOT, config)
    assert topics[len(PREFIX) + 1:] == ["--bootstrap-server", BOOT, "--command-config", str(config), "--list"]
    consumer = tool_command(JAVA, CP, LOG4J2, "kafka-console-consumer", ["--topic", "t"], BOOT, config)
    assert consumer[len(PREFIX) + 1:][2:4] == ["--consumer.config", str(config)]
    given = ["--command-config", "mine.properties", "--list"]
    assert tool_command(JAVA, CP, LOG4J2, "kafka-topics", given, BOOT, config)[len(PREFIX) + 1:] == [
        "--bootstrap-server", BOOT, *given]
    assert str(config) not in tool_command(JAVA, CP, LOG4J2, "kafka-dump-log", ["--files", "x"], BOOT, config)
