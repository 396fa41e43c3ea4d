"""Process settings: one frozen object, read once in `main` from `POVWATCH_*` environment variables.

Nested values use `__`, e.g. `POVWATCH_RULES__MEDICAL_STAY_OUT_OF_POCKET=8000`.
"""
from __future__ import annotations

import sys
import zoneinfo
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from plumbing.secret_file import read_secret_file
from schemas.errors import ConfigError
from schemas.thresholds import RuleConfig, load_rules_file, merge_rules

__all__ = ["Settings", "DEV_PSEUDONYM_KEY", "load_settings"]

DEV_PSEUDONYM_KEY = "povwatch-development-key-not-for-real-data"
_WARNED: list[bool] = []  # the development key's warning was printed


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="POVWATCH_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mode: Literal["development", "production"] = Field(
        "development", description="`production` refuses the development pseudonymisation key")
    bootstrap: str = Field("localhost:9092", description="Kafka bootstrap servers (`host:port`, several "
                           "comma-separated)")
    case_db: str = Field("sqlite:///var/povwatch.db", description="SQLAlchemy URL of the case DB "
                         "(`postgresql+psycopg://user:password@host/db` for PostgreSQL)")
    pseudonym_key: SecretStr = Field(SecretStr(DEV_PSEUDONYM_KEY), description="HMAC key turning an ID number "
                                     "into its person_key (at least 16 characters), held inside the private network; "
                                     "the default is the development key")
    pseudonym_key_file: Path | None = Field(None, description="a file holding the pseudonymisation key (first "
                                            "line; refused if group or others may read it); wins over "
                                            "POVWATCH_PSEUDONYM_KEY")
    pseudonym_previous_key_file: Path | None = Field(None, description="during a key rotation only: the file of "
                                                     "the key being retired; the roster is also published under it "
                                                     "so events pseudonymised with it still join "
                                                     "(docs/operations.md)")
    pseudonym_previous_key: SecretStr | None = Field(None, description="the retiring key itself, when it is not "
                                                     "in a file (POVWATCH_PSEUDONYM_PREVIOUS_KEY_FILE wins)")
    party: str | None = Field(None, description="who this process is on the audit trail (`audit.events`); "
                              "unset: the service's role name (monitor, intake, connector.<dept>, ...)")
    audit_instance: str | None = Field(None, description="which instance of its party this process is: one hash "
                                       "chain per (party, instance); unset: the first free of the host name, "
                                       "`<host>-2`, ... (POVWATCH_RUN_DIR); set: refused while another process of "
                                       "the party on the host holds it")
    run_dir: Path = Field(Path("var") / "run", description="where a process claims its audit instance: one lock "
                          "file per (party, instance), held while it runs, so a second process of the party on the "
                          "host takes `<host>-2` (docs/security.md)")
    partitions: int = Field(3, description="partitions of the event, registry and alert topics "
                            "(`povwatch topics ensure`; the monitor's tables follow them)")
    kafka_version: str = Field("4.1.1", description="Apache Kafka version `povwatch kafka up` fetches and runs")
    kafka_home: Path = Field(Path.home() / ".cache" / "povwatch" / "kafka",
                             description="where the local broker's jars are cached (one directory per version)")
    kafka_data: Path = Field(Path("var") / "kafka", description="the local broker's data, logs and pid file")
    kafka_group_delay_ms: int = Field(0, ge=0, description="the local broker's group.initial.rebalance.delay.ms: 0 "
                                      "forms a new consumer group at once (tests, the demo); Kafka's default, 3000, "
                                      "lets workers started together join one assignment (bench/pipeline.py "
                                      "`--workers`)")
    security_protocol: Literal["PLAINTEXT", "SSL"] = Field("PLAINTEXT", description="how clients reach Kafka: "
                                                          "`SSL` with a client certificate (docs/security.md)")
    ssl_cafile: Path | None = Field(None, description="with SSL: the CA certificate (PEM) the broker's is checked "
                                    "against")
    ssl_certfile: Path | None = Field(None, description="with SSL: this party's certificate (PEM), from "
                                      "`povwatch pki issue`")
    ssl_keyfile: Path | None = Field(None, description="with SSL: this party's private key (PEM)")
    pki_dir: Path = Field(Path("var") / "pki", description="the private CA, the issued certificates and the "
                          "register of parties (`povwatch pki`, `povwatch acl apply`)")
    monitor_app_id: str = Field("povwatch-monitor", description="the monitor's app id: prefix of its consumer "
                                "groups, internal topics and state changelogs")
    monitor_pending_grace_days: float = Field(30.0, gt=0, description="how long an event waits for its person or "
                                              "household before it is counted and listed as unmatched")
    monitor_sweep_seconds: float = Field(60.0, gt=0, description="how often the monitor checks waiting events "
                                         "against the grace period and fires due timers")
    monitor_max_records: int = Field(10_000, gt=0, description="messages per monitor batch (bounds memory while "
                                     "catching up)")
    monitor_linger_ms: int = Field(0, ge=0, description="how long the monitor's producer holds a batch before "
                                   "sending it (ms); its stages send whole batches already, so any wait is added "
                                   "to every hop's latency (docs/benchmarks.md, latency)")
    monitor_metrics_port: int = Field(9464, description="the monitor's `/metrics` port")
    monitor_store: Literal["memory", "rocksdb"] = Field("memory", description="where the monitor keeps its registry "
                                                        "tables and state: in memory, or on disk in RocksDB")
    monitor_store_dir: Path = Field(Path("var") / "monitor", description="the rocksdb store's databases (wiped "
                                    "when a partition is assigned; the topics stay the source of truth)")
    casefeed_group: str = Field("povwatch-casefeed", description="the case feed's consumer group (`.profiles` and "
                                "`.screening` are appended for its side consumers)")
    casefeed_metrics_port: int = Field(9465, description="the case feed's `/metrics` port")
    case_notice_days: int = Field(5, ge=0, description="days a public notice stands before TOWNSHIP_VERIFY")
    relay_metrics_port: int = Field(9467, description="`povwatch relay`'s `/metrics` port (0: none)")
    relay_group: str = Field("povwatch-relay", description="the relay's consumer group "
                             "(`events.<dept>.comparison-result`)")
    intake_host: str = Field("127.0.0.1", description="where `povwatch intake` serves the intake API")
    intake_port: int = Field(8088, description="the intake API's port (`/v1/intake/...`, `/docs`, `/metrics`)")
    intake_tokens: SecretStr | None = Field(None, description="JSON object, channel -> bearer token (at least 16 "
                                            "characters, all different); required by `povwatch intake`")
    intake_docs: bool = Field(False, description="1: serve the intake API's Swagger UI at /docs (off by default: "
                              "the page loads its scripts from a CDN; /openapi.json is always served)")
    desk_host: str = Field("127.0.0.1", description="where `povwatch desk` serves the case workers' web desk")
    desk_port: int = Field(8089, description="the web desk's port")
    desk_secret: SecretStr | None = Field(None, description="signs the desk's session cookies (at least 32 "
                                          "characters); unset: a random one per start, with a warning")
    desk_insecure_cookies: bool = Field(False, description="1: session cookie without `Secure`, for a desk on plain "
                                        "HTTP on this machine only (refused unless desk_host is a loopback address)")
    rules: RuleConfig = Field(RuleConfig(), description="the rules' thresholds (docs/rules.md); over the file "
                              "POVWATCH_RULES_FILE names")
    rules_file: Path | None = Field(None, description="a TOML file of thresholds and `[income_lines]`; the "
                                    "POVWATCH_RULES__* variables win over it")
    case_verify_days: int = Field(15, gt=0, description="an alert not acknowledged within this many days is overdue")
    timezone: str = Field("Asia/Shanghai", description="the prefecture's time zone (IANA name): what \"today\" is "
                          "for dates, deadlines and timers")
    feeds_calendar: Path = Field(Path("deploy") / "feeds-calendar.toml", description="when each department feed is "
                                 "due (`povwatch feeds status`, the monitor's `povwatch_feed_overdue`)")
    feeds_check_seconds: float = Field(300.0, gt=0, description="how often the monitor looks at the feeds against "
                                       "the calendar")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (expected an IANA name such as Asia/Shanghai)") from None
        return value

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def checked_key(self) -> bytes:
        """The pseudonymisation key (from POVWATCH_PSEUDONYM_KEY_FILE, else POVWATCH_PSEUDONYM_KEY); refuses the
        development key outside development mode."""
        key = self.pseudonym_key.get_secret_value()
        if self.pseudonym_key_file is not None:
            if key != DEV_PSEUDONYM_KEY:
                raise ConfigError("set POVWATCH_PSEUDONYM_KEY_FILE or POVWATCH_PSEUDONYM_KEY, not both")
            key = read_secret_file(self.pseudonym_key_file, "POVWATCH_PSEUDONYM_KEY_FILE")
        if key == DEV_PSEUDONYM_KEY:
            if self.mode != "development":
                raise ConfigError(
                    "refusing to run: POVWATCH_PSEUDONYM_KEY is the development key and POVWATCH_MODE is "
                    f"{self.mode}; set a secret key held inside the private network"
                )
            if not _WARNED:  # once per process, however many connectors it runs
                _WARNED.append(True)
                print("povwatch: WARNING: using the DEVELOPMENT pseudonymisation key (POVWATCH_MODE=development); "
                      "never use it on real data", file=sys.stderr)
        if len(key) < 16:
            raise ConfigError("POVWATCH_PSEUDONYM_KEY must be at least 16 characters")
        return key.encode("utf-8")

    def previous_keys(self) -> tuple[bytes, ...]:
        """The key being retired during a rotation (empty outside one): the roster is published under it too."""
        if self.pseudonym_previous_key_file is not None:
            key = read_secret_file(self.pseudonym_previous_key_file, "POVWATCH_PSEUDONYM_PREVIOUS_KEY_FILE")
        elif self.pseudonym_previous_key is not None:
            key = self.pseudonym_previous_key.get_secret_value()
        else:
            return ()
        if len(key) < 16:
            raise ConfigError("POVWATCH_PSEUDONYM_PREVIOUS_KEY must be at least 16 characters")
        if key.encode("utf-8") == self.checked_key():
            raise ConfigError("the previous pseudonymisation key is the current one: nothing is being rotated")
        return (key.encode("utf-8"),)


def load_settings() -> Settings:
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"POVWATCH_{'__'.join(str(p).upper() for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"bad configuration: {problems}") from None
    if settings.rules_file is None:
        return settings
    rules = merge_rules(load_rules_file(settings.rules_file), settings.rules)
    return settings.model_copy(update={"rules": rules})
