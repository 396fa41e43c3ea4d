"""Reading a small TOML configuration file key by key, every mistake one ConfigError line naming the key
(the watch service's and the comparison connector's files).

    read_toml(path)              the file as a dict (missing, unreadable, invalid: one line)
    TomlTable(data, where)       one table: get(key, kind, default, required=), number(key, default, minimum=),
                                 done() - an unknown key is a mistake too
    expand_env(text, where)      ${VAR} replaced by the environment's value (unset: one line)
"""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError

__all__ = ["TomlTable", "expand_env", "read_toml"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TomlTable:
    """One TOML table, read key by key with one-line errors naming `where` it is."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a table")
        self.data, self.where = data, where
        self.used: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise ConfigError(f"{self.where}: missing key {key!r}")
            return default
        value = self.data[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise ConfigError(f"{self.where}.{key}: expected {names}, got {value!r}")
        return value

    def number(self, key: str, default: float, *, minimum: float = 0) -> float:
        value = float(self.get(key, (int, float), default))
        if value < minimum:
            raise ConfigError(f"{self.where}.{key}: must be at least {minimum:g}, not {value:g}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")


def expand_env(text: str, where: str) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{where}: environment variable {name} is not set")
        return os.environ[name]

    return _VAR.sub(value, text)


def read_toml(path: Path) -> dict[str, Any]:
    """A department's TOML file as a dict; a missing, unreadable or invalid file is one ConfigError line."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no such configuration file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: not valid TOML ({exc})") from None
