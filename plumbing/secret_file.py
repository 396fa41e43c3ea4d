"""Secrets read from files: refused when the file is readable by its group or by others.

    read_secret_file(path, setting)   the file's first line (stripped); ConfigError naming the file otherwise

The refusal is one line that names the file and its mode, never the secret. The caller decides what the secret
is for; nothing here logs it.
"""
from __future__ import annotations

import stat
from pathlib import Path

from schemas.errors import ConfigError

__all__ = ["read_secret_file"]


def read_secret_file(path: Path, setting: str) -> str:
    """The secret in `path` (its first line, without surrounding white space)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{setting}: {path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{setting}: refusing {path}: it is readable or writable by group or others "
                          f"(mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting}: cannot read {path} ({type(exc).__name__})") from None
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise ConfigError(f"{setting}: {path} is empty")
    return secret
