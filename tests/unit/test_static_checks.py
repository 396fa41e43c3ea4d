"""Static checks as tests (docs/architecture.md, "How the code is shaped"): `mypy --strict` and ruff must report
nothing, and no file of the project points at a document outside the repository (by name, by an absolute path into
the workspace, or by a relative path that climbs out of the checkout).

mypy and ruff run as subprocesses of this interpreter (`python -m mypy`, `python -m ruff`), from the project root,
so they read their configuration from pyproject.toml: mypy checks the `files` listed there (services, connectors,
schemas).
"""
from __future__ import annotations

import re
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
    _check(_run("ruff", "check", "services", "connectors", "plumbing", "schemas", "tests", "bench"))


# A relative path that climbs out of the repository (`../shared/notes.md` in a doc, `../../x` in a comment) points at
# something a clone does not have. Paths are resolved from the file's own directory, as a link would be.
CLIMBING = re.compile(r"(?<![\w.])((?:\.\./)+[\w.-][\w./-]*)")


def test_no_relative_path_climbs_out_of_the_repository() -> None:
    found = []
    for path in _project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for target in CLIMBING.findall(line):
                if not (path.parent / target).resolve().is_relative_to(ROOT):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {target}")
    assert found == [], "paths outside the repository:\n" + "\n".join(found)


def test_the_climbing_check_resolves_from_the_files_directory() -> None:
    up = "../"  # spelt apart, so this file does not trip the check above
    line = f"loaded by {up}prometheus.yml; notes in {up * 3}shared/notes.md"
    assert CLIMBING.findall(line) == [f"{up}prometheus.yml", f"{up * 3}shared/notes.md"]
    rules = ROOT / "deploy" / "prometheus" / "rules"
    assert (rules / f"{up}prometheus.yml").resolve().is_relative_to(ROOT)
    assert not (rules / f"{up * 4}shared/notes.md").resolve().is_relative_to(ROOT)


# The design notes the project started from lived beside the repository, not in it; what they held is in docs/
# (architecture.md, domain.md, feeds.md, rules.md). A pointer to one of them is a pointer nobody can follow.
OUTSIDE_DOCS = re.compile(r"\b(?:DESIGN|FEEDS|RULES|DOMAIN|STYLE)\.md\b|/wor[k]/")  # [k]: not this line


def _project_files() -> list[Path]:
    """Every file of the project: tracked, or new and not ignored (git), else every file outside .git/.venv."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, timeout=60)
    if listed.returncode == 0:
        return [ROOT / name for name in listed.stdout.decode("utf-8").split("\0") if name]
    skip = {".git", ".venv", "var", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_no_file_points_at_a_document_outside_the_repository() -> None:
    found = []
    for path in _project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary files; a file deleted but not yet staged
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_DOCS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert found == [], "point into docs/ instead:\n" + "\n".join(found)


# The stream frameworks the engine was compared with (bench/engines.py, docs/decisions/0001-stream-engine.md) are
# bench-only: in the optional `bench` extra, never a dependency of the product, never imported by it.
BENCH_ONLY = ("faust", "mode", "quixstreams", "confluent_kafka")  # rocksdict is the monitor's own (its disk store)
PRODUCT = ("services", "connectors", "plumbing", "schemas")


def _imported_modules(path: Path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_the_product_never_imports_a_bench_only_framework() -> None:
    found = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            for module in _imported_modules(path):
                if module.split(".")[0] in BENCH_ONLY:
                    found.append(f"{path.relative_to(ROOT)}: imports {module}")
    assert found == [], "bench-only frameworks imported by the product:\n" + "\n".join(found)


def test_the_stream_frameworks_are_only_in_the_bench_extra() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}

    assert {"faust-streaming", "quixstreams"} <= names(extras["bench"])
    for where, requirements in [("dependencies", project["dependencies"]),
                                *((f"extra {name}", reqs) for name, reqs in extras.items() if name != "bench")]:
        assert not names(requirements) & {"faust-streaming", "quixstreams"}, where


# A test waits for the condition it stands for (a metric, a file, a row, an offset), never for a fixed time: a fixed
# sleep is too short on a loaded machine and too long everywhere else (docs/testing.md, "Waiting, not sleeping").
# Where time passing is itself the behaviour, or a sleep is the interval of a loop that polls for a condition with a
# deadline, the line says so: a trailing `# sleep-ok: <reason>`.
SLEEP = re.compile(r"(?<![\w])(?:\w+\.)*(?:sleep|wait_for_timeout)\s*\(")
SLEEP_OK = re.compile(r"#\s*sleep-ok:\s*\S")


def sleeps_without_reason(text: str) -> list[int]:
    """Line numbers of the sleep calls in `text` (code, or code in a string) without a `# sleep-ok: <reason>`."""
    return [number for number, line in enumerate(text.splitlines(), 1)
            if SLEEP.search(line.split("#", 1)[0] if not SLEEP_OK.search(line) else "")]


def test_no_test_sleeps_without_saying_why() -> None:
    found = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        found += [f"{path.relative_to(ROOT)}:{n}: {text.splitlines()[n - 1].strip()[:100]}"
                  for n in sleeps_without_reason(text)]
    assert found == [], ("wait for the condition instead (or end the line with `# sleep-ok: <reason>`):\n"
                         + "\n".join(found))


def test_the_sleep_check_finds_every_spelling() -> None:
    z, w = "sle" + "ep", "wait_for_" + "timeout"  # spelt apart, so this file does not trip the check above
    caught = [f"time.{z}(3)", f"    await asyncio.{z}(0.5)", f"{z}(1)", f"page.{w}(200)",
              f"time.{z} (2)", f'OPENER = "while not go.exists(): time.{z}(0.005)"', f"x = 1; time.{z}(2)  # later"]
    passed = [f"time.{z}(0.2)  # sleep-ok: the polling interval of a wait with a deadline", f"# time.{z}(3)",
              f"backoff.{z}_seconds = 3", "wait_until(port, done, timeout=60)", f"def no_{z}() -> None:"]
    assert sleeps_without_reason("\n".join(caught)) == list(range(1, len(caught) + 1))
    assert sleeps_without_reason("\n".join(passed)) == []
    assert sleeps_without_reason(f"time.{z}(1)  # sleep-ok:") == [1]  # a reason is required
