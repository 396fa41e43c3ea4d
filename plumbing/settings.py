"""Process settings: one frozen object, read once in `main` from `POVWATCH_*` environment variables.

Nested values use `__`, e.g. `POVWATCH_RULES__MEDICAL_STAY_OOP=8000`.
"""
from __future__ import annotations

import sys
import zoneinfo
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import ConfigError
from schemas.thresholds import RuleConfig, load_rules_file, merge_rules

__all__ = ["Settings", "DEV_PSEUDONYM_KEY", "load_settings"]

DEV_PSEUDONYM_KEY = "povwatch-development-key-not-for-real-data"
_WARNED: list[bool] = []  # the development key's warning was printed


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="POVWATCH_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    mode: Literal["development", "production"] = "development"
    bootstrap: str = "localhost:9092"
    case_db: str = "sqlite:///var/povwatch.db"
    pseudonym_key: SecretStr = SecretStr(DEV_PSEUDONYM_KEY)
    partitions: int = 3
    kafka_version: str = "4.1.1"
    kafka_home: Path = Path.home() / ".cache" / "povwatch" / "kafka"
    kafka_data: Path = Path("var") / "kafka"
    monitor_app_id: str = "povwatch-monitor"
    monitor_pending_grace_days: float = Field(30.0, gt=0)  # events wait this long for their person/household
    monitor_sweep_seconds: float = Field(60.0, gt=0)  # how often waiting events are checked against the grace
    monitor_max_records: int = Field(10_000, gt=0)  # messages per batch
    monitor_metrics_port: int = 9464
    monitor_store: Literal["memory", "rocksdb"] = "memory"  # where the monitor keeps registry tables and state
    monitor_store_dir: Path = Path("var") / "monitor"  # the rocksdb store's databases (wiped per assignment)
    casefeed_group: str = "povwatch-casefeed"
    casefeed_metrics_port: int = 9465
    case_notice_days: int = Field(5, ge=0)  # a public notice stands this many days before TOWNSHIP_VERIFY
    relay_metrics_port: int = 9467  # `povwatch relay`: outbox -> Kafka, comparison answers -> case DB
    relay_group: str = "povwatch-relay"  # the relay's consumer group (events.<dept>.comparison-result)
    intake_host: str = "127.0.0.1"
    intake_port: int = 8088
    intake_tokens: SecretStr | None = None  # JSON object, channel -> bearer token (services/intake/server.py)
    desk_host: str = "127.0.0.1"  # where `povwatch desk` serves the case workers' web desk
    desk_port: int = 8089
    desk_secret: SecretStr | None = None  # signs the desk's session cookies; generated per start when unset
    desk_insecure_cookies: bool = False  # 1: cookies without Secure, for a plain-HTTP desk on this machine only
    rules: RuleConfig = RuleConfig()  # POVWATCH_RULES__<NAME>; over the file POVWATCH_RULES_FILE names
    rules_file: Path | None = None  # a TOML file of thresholds and [income_lines] (schemas/thresholds.py)
    case_verify_days: int = Field(15, gt=0)  # an alert not acknowledged within this many days is overdue
    timezone: str = "Asia/Shanghai"  # the prefecture's time zone: what "today" is for the future-date check
    feeds_calendar: Path = Path("deploy") / "feeds-calendar.toml"  # when each feed is due (`povwatch feeds status`)
    feeds_check_seconds: float = Field(300.0, gt=0)  # how often the monitor looks at the feeds against the calendar

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
        """The pseudonymisation key; refuses the development key outside development mode."""
        key = self.pseudonym_key.get_secret_value()
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
