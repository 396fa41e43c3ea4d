"""Schema releases: snapshot every changed schema, and prove old data still reads with the current schemas.

    python -m schemas.release [--only NAME ...]   check compatibility, then write the snapshots that are due (of
                                                  the named schemas only, with --only); exit 1 on problems

A snapshot is `released/<full name>/v<N>.avsc` under the schema directory: the schema fully expanded
(`schemas.codec.expanded_schema`, named types inlined, logical types kept). `release()` writes v<N+1> for each
current schema that differs from its newest snapshot (v1 for a new schema). `check_compatibility()` is the
backward-compatibility proof, transitively: for every snapshot of every name, records generated from that
snapshot are written with it and read back with the current schema (Avro schema resolution); any failure is a
problem naming the schema and the version. Every function takes the schema directory, so tests use copies.
"""
from __future__ import annotations

import io
import json
import random
import sys
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import load_schema, parse_schema
from fastavro.utils import generate_many

from schemas.codec import AVRO_DIR, expanded_schema

__all__ = ["current_names", "snapshots", "release", "check_compatibility", "main"]

SAMPLES = 50
SEED = 20240305


def current_names(directory: Path = AVRO_DIR) -> list[str]:
    """Full names of the current schemas (one `<full name>.avsc` file each)."""
    return sorted(path.name[: -len(".avsc")] for path in directory.glob("*.avsc"))


def snapshots(name: str, directory: Path = AVRO_DIR) -> list[tuple[int, Path]]:
    """(version, path) of every released snapshot of `name`, oldest first."""
    found = []
    for path in (directory / "released" / name).glob("v*.avsc"):
        version = path.name[1 : -len(".avsc")]
        if version.isdigit():
            found.append((int(version), path))
    return sorted(found)


def release(directory: Path = AVRO_DIR, only: set[str] | None = None) -> list[Path]:
    """Write the next snapshot of every schema (of `only`, when given) that differs from its newest one; return
    the files written."""
    written = []
    for name in current_names(directory):
        if only is not None and name not in only:
            continue
        current = expanded_schema(name, directory)
        released = snapshots(name, directory)
        if released and json.loads(released[-1][1].read_text(encoding="utf-8")) == current:
            continue
        version = released[-1][0] + 1 if released else 1
        path = directory / "released" / name / f"v{version}.avsc"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _samples(schema: Any, count: int, seed: int) -> list[Any]:
    # fastavro's generator draws from the global `random`; seed it for repeatable samples, then put it back
    state = random.getstate()
    random.seed(seed)
    try:
        return list(generate_many(schema, count))
    finally:
        random.setstate(state)


def check_compatibility(directory: Path = AVRO_DIR, *, samples: int = SAMPLES, seed: int = SEED) -> list[str]:
    """Problems (empty when compatible): data of each released snapshot that the current schema cannot read."""
    problems = []
    released_root = directory / "released"
    names = sorted(p.name for p in released_root.iterdir() if p.is_dir()) if released_root.is_dir() else []
    for name in names:
        current_path = directory / f"{name}.avsc"
        if not current_path.exists():
            problems.append(f"{name}: released, but the current schema file is gone")
            continue
        reader = load_schema(str(current_path))
        for version, path in snapshots(name, directory):
            try:
                writer = parse_schema(json.loads(path.read_text(encoding="utf-8")))
                for record in _samples(writer, samples, seed + version):
                    buf = io.BytesIO()
                    fastavro.schemaless_writer(buf, writer, record)
                    buf.seek(0)
                    fastavro.schemaless_reader(buf, writer, reader)
            except Exception as exc:  # any failure to write old data or to read it with the current schema
                problems.append(f"{name} v{version}: data cannot be read with the current schema "
                                f"({type(exc).__name__}: {exc})")
    return problems


def main(argv: list[str] | None = None) -> int:
    """`python -m schemas.release [DIRECTORY] [--only NAME ...]`: `--only` releases just the named schemas."""
    args = list(argv or [])
    only = None
    if "--only" in args:
        at = args.index("--only")
        only, args = set(args[at + 1:]), args[:at]
    directory = Path(args[0]) if args else AVRO_DIR
    problems = check_compatibility(directory)
    for problem in problems:
        print(f"incompatible: {problem}", file=sys.stderr)
    if problems:
        print("no snapshot written: fix the schemas so that every released version stays readable",
              file=sys.stderr)
        return 1
    written = release(directory, only)
    for path in written:
        print(f"released {path.relative_to(directory)}")
    if not written:
        print("every schema matches its newest snapshot; nothing to release")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
