"""Kafka's own command-line tools (`kafka-topics`, `kafka-consumer-groups`, ...) run from the jar cache.

`povwatch kafka tool NAME [ARGS...]` runs the tool the Kafka distribution's `bin/NAME.sh` runs, with the same
arguments, on the jars plumbing/kafka_local.py fetched (`org.apache.kafka:kafka-tools` and the broker). Tools
that talk to a cluster get `--bootstrap-server` from POVWATCH_BOOTSTRAP unless the arguments name a server or a
controller themselves. The tool's output, its exit code and its stdin are the caller's.

    TOOLS                         tool name -> Tool(main class, where --bootstrap-server goes)
    tool_name(text)               "kafka-topics.sh" -> "kafka-topics" (argparse type; unknown names refused)
    tool_command(...)             the java command line (pure)
    run_tool(settings, name, args) -> the tool's exit code
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # the command line imports this module to build its parser: keep that import light
    from plumbing.settings import Settings

__all__ = ["Tool", "TOOLS", "tool_name", "tool_command", "run_tool"]

TOOL_HEAP = "-Xmx256m"  # what Kafka's kafka-run-class.sh gives its tools


@dataclass(frozen=True)
class Tool:
    main: str  # the Java main class bin/<name>.sh runs in Kafka 4.1
    # where --bootstrap-server goes: "first" (an option of the tool), "subcommand" (an option of the tool's
    # sub-command, after its name), None (the tool does not take it)
    bootstrap: Literal["first", "subcommand"] | None = "first"
    # the option naming a client properties file: on a secured broker the party's TLS settings go there
    config: str | None = "--command-config"


TOOLS: dict[str, Tool] = {
    "kafka-topics": Tool("org.apache.kafka.tools.TopicCommand"),
    "kafka-consumer-groups": Tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"),
    "kafka-groups": Tool("org.apache.kafka.tools.GroupsCommand"),
    "kafka-share-groups": Tool("org.apache.kafka.tools.consumer.group.ShareGroupCommand"),
    "kafka-streams-groups": Tool("org.apache.kafka.tools.streams.StreamsGroupCommand"),
    "kafka-console-consumer": Tool("org.apache.kafka.tools.consumer.ConsoleConsumer", config="--consumer.config"),
    "kafka-console-producer": Tool("org.apache.kafka.tools.ConsoleProducer", config="--producer.config"),
    "kafka-get-offsets": Tool("org.apache.kafka.tools.GetOffsetShell"),
    "kafka-configs": Tool("kafka.admin.ConfigCommand"),
    "kafka-delete-records": Tool("org.apache.kafka.tools.DeleteRecordsCommand"),
    "kafka-log-dirs": Tool("org.apache.kafka.tools.LogDirsCommand"),
    "kafka-reassign-partitions": Tool("org.apache.kafka.tools.reassign.ReassignPartitionsCommand"),
    "kafka-leader-election": Tool("org.apache.kafka.tools.LeaderElectionCommand", config="--admin.config"),
    "kafka-acls": Tool("org.apache.kafka.tools.AclCommand"),
    "kafka-transactions": Tool("org.apache.kafka.tools.TransactionsCommand"),
    "kafka-features": Tool("org.apache.kafka.tools.FeatureCommand"),
    "kafka-metadata-quorum": Tool("org.apache.kafka.tools.MetadataQuorumCommand"),
    "kafka-broker-api-versions": Tool("org.apache.kafka.tools.BrokerApiVersionsCommand"),
    "kafka-client-metrics": Tool("org.apache.kafka.tools.ClientMetricsCommand"),
    "kafka-delegation-tokens": Tool("org.apache.kafka.tools.DelegationTokenCommand"),
    "kafka-streams-application-reset": Tool("org.apache.kafka.tools.StreamsResetter", config="--config-file"),
    "kafka-producer-perf-test": Tool("org.apache.kafka.tools.ProducerPerformance", None,  # --producer-props
                                     config="--producer.config"),
    "kafka-consumer-perf-test": Tool("org.apache.kafka.tools.ConsumerPerformance", config="--consumer.config"),
    "kafka-cluster": Tool("org.apache.kafka.tools.ClusterTool", "subcommand", config=None),  # cluster-id ...
    "kafka-dump-log": Tool("kafka.tools.DumpLogSegments", None, config=None),  # reads log files
    "kafka-storage": Tool("kafka.tools.StorageTool", None, config=None),  # formats storage
}

_SERVER_OPTIONS = ("--bootstrap-server", "--bootstrap-controller")


def tool_name(text: str) -> str:
    """The tool's name as `bin/` spells it without `.sh`; an unknown name is an argparse error listing them."""
    name = text.removesuffix(".sh")
    if name not in TOOLS:
        raise argparse.ArgumentTypeError(f"unknown Kafka tool {text!r}; known: {', '.join(sorted(TOOLS))}")
    return name


def tool_command(java: str, classpath: str, log4j2: Path, name: str, args: Sequence[str], bootstrap: str,
                 client_config: Path | None = None) -> list[str]:
    """`client_config`: a client properties file (the secured broker's TLS settings), passed with the tool's
    option unless the arguments name one."""
    tool = TOOLS[name]
    args = list(args)
    if client_config is not None and tool.config is not None and not any(
            a == tool.config or a.startswith(tool.config + "=") for a in args):
        args = [tool.config, str(client_config), *args]
    names_server = any(a == o or a.startswith(o + "=") for a in args for o in _SERVER_OPTIONS)
    server = ["--bootstrap-server", bootstrap]
    if names_server or tool.bootstrap is None:
        pass
    elif tool.bootstrap == "first":
        args = server + args
    elif args and not args[0].startswith("-"):  # after the sub-command's name; without one, the tool's usage
        args = args[:1] + server + args[1:]
    return [java, TOOL_HEAP, f"-Dlog4j2.configurationFile={log4j2}", "-cp", classpath, tool.main, *args]


def run_tool(settings: Settings, name: str, args: Sequence[str]) -> int:
    """Run the tool in the foreground (fetching the jars first if needed); returns its exit code. With
    POVWATCH_SECURITY_PROTOCOL=SSL the tool gets the party's TLS settings in a client properties file
    (plumbing/kafka_security.py), readable by its owner only and removed afterwards."""
    from plumbing import kafka_local, kafka_security

    java, classpath, log4j2 = kafka_local.java_classpath(settings)
    security = kafka_security.current()
    if not security.secure:
        return subprocess.run(tool_command(java, classpath, log4j2, name, args, settings.bootstrap)).returncode
    with tempfile.TemporaryDirectory(prefix="povwatch-tool-") as folder:
        config = Path(folder) / "client.properties"
        config.write_text(kafka_security.tool_properties(security))
        command = tool_command(java, classpath, log4j2, name, args, settings.bootstrap, config)
        return subprocess.run(command).returncode
