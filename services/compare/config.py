"""A department's comparison connector configuration: the `[comparison]` section of a TOML file - the same file
as the department's `connector watch` configuration, or one of its own (deploy/connectors/comparison.toml).

    department = "pboc"                      # one of the five comparison departments (schemas.catalog)
    [kafka]
    bootstrap = "10.0.0.5:9092"              # overrides POVWATCH_BOOTSTRAP
    cafile = "pki/ca.crt"                    # with certfile and keyfile: TLS on the department's own
    certfile = "pki/pboc.crt"                # certificate (docs/security.md), whatever POVWATCH_SSL_* say
    keyfile = "pki/pboc.key"
    [comparison]
    group = "povwatch-compare-pboc"          # consumer group of requests.<dept>.comparison (this default)
    metrics_port = 9468                      # /metrics; 0 = do not serve
    [[comparison.sources]]                   # where the department looks: a file ...
    feed = "deposit-loan"                    # the feed whose layout (docs/feeds.md) the source has
    path = "data/存贷款.csv"
    [[comparison.sources]]                   # ... or a table or query of its database
    feed = "deposit-loan"
    url = "postgresql+psycopg://reader:${BANK_PASSWORD}@bank-db/bank"   # ${VAR}: from the environment
    table = "v_deposit_loan"                 # or query = "SELECT ..."

Relative paths are relative to the file. Other sections ([service], [[folders]], [[sql]]) are the watch
service's and are not read here. Every mistake is one line (ConfigError) naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plumbing.kafka_security import ClientSecurity, from_toml
from plumbing.toml_config import TomlTable, expand_env, read_toml
from schemas.catalog import ComparisonDepartment, comparison_department
from schemas.errors import ConfigError
from services.compare.sources import SourceConfig

__all__ = ["CompareConfig", "load_compare_config"]


@dataclass(frozen=True)
class CompareConfig:
    source: Path
    department: ComparisonDepartment
    group: str
    metrics_port: int
    bootstrap: str | None
    sources: tuple[SourceConfig, ...]
    security: ClientSecurity | None = None  # [kafka] cafile/certfile/keyfile: the department's own certificate


def load_compare_config(path: Path) -> CompareConfig:
    data = read_toml(path)
    base = path.resolve().parent
    top = TomlTable(data, path.name)
    slug = top.get("department", str, required=True)
    try:
        entry = comparison_department(slug)
    except KeyError as exc:
        raise ConfigError(f"{path.name}: department: {exc.args[0]}") from None
    if "comparison" not in data:
        raise ConfigError(f"{path.name}: no [comparison] section: nothing to answer from")
    section = TomlTable(top.get("comparison", dict), "comparison")
    kafka = TomlTable(top.get("kafka", dict, {}), "kafka")
    bootstrap = kafka.get("bootstrap", str)
    security = from_toml(kafka, base)
    group = section.get("group", str, f"povwatch-compare-{slug}")
    port = int(section.number("metrics_port", 0))
    if port > 65535:
        raise ConfigError(f"comparison.metrics_port: not a port number: {port}")
    feeds = {f.feed for f in entry.feeds}
    sources = []
    for index, item in enumerate(section.get("sources", list, [])):
        where = f"comparison.sources[{index}]"
        source = TomlTable(item, where)
        feed = source.get("feed", str, required=True)
        if feed not in feeds:
            raise ConfigError(f"{where}.feed: {slug} compares from {' / '.join(sorted(feeds))}, not {feed!r}")
        file, url = source.get("path", str), source.get("url", str)
        table, query = source.get("table", str), source.get("query", str)
        if (file is None) == (url is None):
            raise ConfigError(f"{where}: give either path or url")
        if url is not None and (table is None) == (query is None):
            raise ConfigError(f"{where}: with url, give either table or query")
        if file is not None and (table is not None or query is not None):
            raise ConfigError(f"{where}: table and query go with url, not with path")
        sources.append(SourceConfig(feed, base / file if file is not None else None,
                                    expand_env(url, where) if url is not None else None, table, query))
        source.done()
    if not sources:
        raise ConfigError("comparison: no [[comparison.sources]]: nothing to answer from")
    section.done()
    return CompareConfig(path, entry, group, port, bootstrap, tuple(sources), security)
