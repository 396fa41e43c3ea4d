"""Static checks as tests (STYLE.md item 13): `mypy --strict` and ruff must report nothing.

Both run as subprocesses of this interpreter (`python -m mypy`, `python -m ruff`), from the project root, so they
read their configuration from pyproject.toml: mypy checks the `files` listed there (services, connectors, schemas).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(result.args[2:])}` exited {result.returncode}:\n{result.stdout}{result.stderr}",
                    pytrace=False)


def test_mypy_strict_passes() -> None:
    _check(_run("mypy"))


def test_ruff_passes() -> None:
    _check(_run("ruff", "check", "services", "connectors", "schemas", "tests", "bench"))
