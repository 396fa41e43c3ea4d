"""A department's connector configuration: one small TOML file (deploy/connectors/ has one per kind of source).

    department = "medical-security"          # the department whose feeds these are
    [service]                                # all optional
    state = "state/connector.db"             # checkpoints (default: <config name>.state.db beside the file)
    metrics_port = 9466                      # /metrics; 0 = do not serve
    settle_seconds = 5                       # a file is taken once its size and mtime held this long
    scan_seconds = 2                         # how often the drop folders are looked at
    checkpoint_rows = 5000                   # rows between two checkpoints (each after the broker's ack)
    [kafka]
    bootstrap = "10.0.0.5:9092"              # overrides POVWATCH_BOOTSTRAP (every other setting: POVWATCH_*)
    cafile = "pki/ca.crt"                    # with certfile and keyfile: TLS on the department's own
    certfile = "pki/medical-security.crt"    # certificate (docs/security.md), whatever POVWATCH_SSL_* say
    keyfile = "pki/medical-security.key"
    [[folders]]                              # a drop folder per feed
    path = "drop/hospitalization"
    feed = "hospitalization"
    [[sql]]                                  # a table or view polled by cursor
    name = "his"                             # names the source in checkpoints and metrics
    feed = "hospitalization"
    url = "postgresql+psycopg://reader:${HIS_PASSWORD}@his-db/his"   # ${VAR}: from the environment
    table = "v_discharge"                    # or query = "SELECT ... FROM ..."
    updated_column = "updated_at"
    key_column = "id"
    interval_seconds = 60
    batch_rows = 5000

Relative paths are relative to the configuration file. Every mistake is one line (ConfigError) naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connectors.catalog import get_feed
from connectors.sources.sql import SqlSpec
from plumbing.kafka_security import ClientSecurity, from_toml
from plumbing.toml_config import TomlTable, expand_env, read_toml
from schemas.errors import ConfigError, PovwatchError

__all__ = ["FolderConfig", "SqlConfig", "WatchConfig", "load_config"]



@dataclass(frozen=True)
class FolderConfig:
    path: Path
    department: str
    feed: str


@dataclass(frozen=True)
class SqlConfig:
    spec: SqlSpec
    department: str
    feed: str
    interval: float


@dataclass(frozen=True)
class WatchConfig:
    source: Path
    department: str
    state: Path
    metrics_port: int
    settle_seconds: float
    scan_seconds: float
    checkpoint_rows: int
    bootstrap: str | None
    folders: tuple[FolderConfig, ...]
    sql: tuple[SqlConfig, ...]
    security: ClientSecurity | None = None  # [kafka] cafile/certfile/keyfile: the department's own certificate


def _feed(department: str, feed: str, where: str) -> None:
    try:
        get_feed(department, feed)
    except PovwatchError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: Path) -> WatchConfig:
    data = read_toml(path)
    base = path.resolve().parent
    top = TomlTable(data, path.name)
    department = top.get("department", str, required=True)
    service = TomlTable(top.get("service", dict, {}), "service")
    kafka = TomlTable(top.get("kafka", dict, {}), "kafka")
    state = base / service.get("state", str, f"{path.stem}.state.db")
    port = int(service.number("metrics_port", 9466))
    if port > 65535:
        raise ConfigError(f"service.metrics_port: not a port number: {port}")
    settle = service.number("settle_seconds", 5.0)
    scan = service.number("scan_seconds", 2.0, minimum=0.05)
    every = int(service.number("checkpoint_rows", 5000, minimum=1))
    bootstrap = kafka.get("bootstrap", str)
    security = from_toml(kafka, base)
    folders = []
    for index, item in enumerate(top.get("folders", list, [])):
        entry = TomlTable(item, f"folders[{index}]")
        feed = entry.get("feed", str, required=True)
        dept = entry.get("department", str, department)
        _feed(dept, feed, entry.where)
        folders.append(FolderConfig(base / entry.get("path", str, required=True), dept, feed))
        entry.done()
    sql = []
    for index, item in enumerate(top.get("sql", list, [])):
        entry = TomlTable(item, f"sql[{index}]")
        feed = entry.get("feed", str, required=True)
        dept = entry.get("department", str, department)
        _feed(dept, feed, entry.where)
        table, query = entry.get("table", str), entry.get("query", str)
        if (table is None) == (query is None):
            raise ConfigError(f"{entry.where}: give either table or query")
        name = entry.get("name", str, table or f"sql{index}")
        spec = SqlSpec(name, expand_env(entry.get("url", str, required=True), entry.where), table, query,
                       entry.get("updated_column", str, required=True), entry.get("key_column", str, required=True),
                       int(entry.number("batch_rows", 5000, minimum=1)))
        sql.append(SqlConfig(spec, dept, feed, entry.number("interval_seconds", 60.0, minimum=0.1)))
        entry.done()
    names = [s.spec.name for s in sql]
    if len(set(names)) != len(names):
        raise ConfigError("sql: two sources with the same name")
    if not folders and not sql:
        raise ConfigError(f"{path.name}: no [[folders]] and no [[sql]]: nothing to watch")
    top.used.add("comparison")  # read by `povwatch connector compare` (services/compare/config.py)
    for table_ in (top, service, kafka):
        table_.done()
    return WatchConfig(path, department, state, port, settle, scan, every, bootstrap, tuple(folders), tuple(sql),
                       security)
