"""The rules' thresholds: every number of the risk model, with the plan's figures (or the bureau's working
assumptions) as defaults, and the poverty line per county and year.

Set by `POVWATCH_RULES__<NAME>` (e.g. `POVWATCH_RULES__JOB_GAP_DAYS=90`) and by the TOML file named by
`POVWATCH_RULES_FILE`; a variable wins over the file. The file may also hold the income lines:

    job_gap_days = 60
    [income_lines]
    default = 9000            # CNY per person per year, every county and year not listed
    [income_lines.counties."652702"]
    2025 = 9600

`load_rules_file` reads such a file; a malformed one is a `ConfigError` naming the key.

Why it lives in `schemas` (it lived in services/monitor/): it is a vocabulary shared across the layers, like
schemas.alerts - the settings (plumbing/settings.py) carry it, the monitor judges by it, the case work holds a
household's income against its lines (services/cases) - and a pure model with no dependency but pydantic and
schemas.errors. Below the plumbing, the settings can hold it without importing a service; it is not plumbing
itself (no machinery, only the risk model's numbers).
"""
from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.errors import ConfigError

__all__ = ["IncomeLines", "RuleConfig", "load_rules_file", "merge_rules"]


class IncomeLines(BaseModel):
    """The poverty line (人均纯收入, CNY per person and year): a default, and lines per county (6 digits) and year."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    default: Decimal = Field(Decimal("9000"), gt=0)
    counties: dict[str, dict[int, Decimal]] = Field(default_factory=dict)

    @field_validator("counties")
    @classmethod
    def _county_codes(cls, value: dict[str, dict[int, Decimal]]) -> dict[str, dict[int, Decimal]]:
        for county, years in value.items():
            if len(county) != 6 or not county.isdigit():
                raise ValueError(f"county {county!r}: a county is its 6-digit code")
            for year, line in years.items():
                if not 2000 <= year <= 2100:
                    raise ValueError(f"county {county} year {year}: a year between 2000 and 2100")
                if line <= 0:
                    raise ValueError(f"county {county} year {year}: the line must be positive")
        return value

    def line(self, county: str, year: int) -> Decimal:
        """The line of `county` (6 digits) for `year`: its own if listed, else the default."""
        return self.counties.get(county, {}).get(year, self.default)


class RuleConfig(BaseModel):
    """Rule thresholds; the defaults are docs/rules.md's (the plan's 9,000 CNY line, P30)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # DEATH_IN_HOUSEHOLD, ACCIDENT_INJURY: the working age
    death_working_age_min: int = Field(16, ge=0)
    death_working_age_max: int = Field(60, ge=0)
    # MEDICAL_EXPENSE
    medical_window_days: int = Field(365, gt=0)
    medical_income_share: Decimal = Field(Decimal("0.5"), gt=0)
    medical_stay_out_of_pocket: Decimal = Field(Decimal("10000"), ge=0)
    # DISASTER_LOSS (disaster-loss and farm-disaster)
    disaster_income_share: Decimal = Field(Decimal("0.5"), gt=0)
    # ASSET_PURCHASE
    machinery_net_price: Decimal = Field(Decimal("50000"), ge=0)  # 购买金额 - 补贴金额
    deposit_income_share: Decimal = Field(Decimal("1"), gt=0)  # 存款余额 vs annual net income
    # INCOME_BELOW_LINE, INCOME_DROP
    income_lines: IncomeLines = IncomeLines()
    income_drop_share: Decimal = Field(Decimal("0.7"), gt=0, le=1)
    # JOB_LOSS
    job_gap_days: int = Field(60, gt=0)
    # WATER_UNSAFE, REGIONAL_WATER
    water_unsolved_days: int = Field(30, gt=0)
    # REGIONAL_DISASTER
    regional_min_households: int = Field(5, ge=2)
    regional_window_days: int = Field(7, ge=0)
    village_lost_area_mu: Decimal = Field(Decimal("100"), gt=0)  # 绝收面积 of a village-level farm-disaster row
    village_livestock_deaths: int = Field(50, gt=0)
    # REGIONAL_RETURNS
    returns_min_persons: int = Field(10, ge=2)
    returns_window_days: int = Field(30, ge=0)
    # REGIONAL_ILLNESS
    illness_min_households: int = Field(5, ge=2)
    illness_window_days: int = Field(14, ge=0)
    # REGIONAL_RISK_CLUSTER
    cluster_min_households: int = Field(5, ge=2)
    cluster_window_days: int = Field(30, ge=0)
    # COLLECTIVE_INCOME_DROP
    collective_drop_share: Decimal = Field(Decimal("0.7"), gt=0, le=1)
    # a regional alert is sent again as households join it, until it lists this many: beyond, its period takes
    # no more records (the state and the work of a very dense cluster stay bounded)
    regional_list_max: int = Field(50, ge=5)
    # state kept per household and region, by event date
    history_horizon_days: int = Field(730, gt=0)

    @model_validator(mode="after")
    def _horizon_covers_windows(self) -> RuleConfig:
        windows = {"medical_window_days": self.medical_window_days,
                   "regional_window_days": self.regional_window_days,
                   "returns_window_days": self.returns_window_days,
                   "illness_window_days": self.illness_window_days,
                   "cluster_window_days": self.cluster_window_days,
                   "job_gap_days": self.job_gap_days}
        for name, days in windows.items():
            if self.history_horizon_days < days:
                raise ValueError(f"history_horizon_days ({self.history_horizon_days}) must cover {name} ({days})")
        if self.death_working_age_min > self.death_working_age_max:
            raise ValueError("death_working_age_min must not exceed death_working_age_max")
        return self


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_rules_file(path: Path) -> dict[str, Any]:
    """The thresholds a rules file sets, checked against RuleConfig (ConfigError naming the file and the key)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"rules file {path}: not found (POVWATCH_RULES_FILE)") from None
    except OSError as exc:
        raise ConfigError(f"rules file {path}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"rules file {path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"rules file {path}: not TOML: {exc}") from None
    lines = data.get("income_lines")
    if isinstance(lines, dict) and isinstance(lines.get("counties"), dict):
        for county, years in lines["counties"].items():
            if isinstance(years, dict):  # TOML keys are strings; the years are numbers
                bad = [y for y in years if not str(y).isdigit()]
                if bad:
                    raise ConfigError(f"rules file {path}: income_lines.counties.{county}.{bad[0]}: "
                                      "a year is a number such as 2025")
    try:
        RuleConfig(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"rules file {path}: {_location(err['loc'])}: {err['msg']}") from None
    except TypeError as exc:
        raise ConfigError(f"rules file {path}: {exc}") from None
    return data


def merge_rules(from_file: dict[str, Any], from_env: RuleConfig) -> RuleConfig:
    """The file's thresholds, overridden by those the environment set explicitly (`POVWATCH_RULES__*`)."""
    explicit = {name: getattr(from_env, name) for name in from_env.model_fields_set}
    try:
        return RuleConfig(**{**from_file, **explicit})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"rules: {_location(err['loc'])}: {err['msg']}") from None
