"""One department's connector process of the year-end sweep (bench/sweep.py starts one per department):

    .venv/bin/python bench/sweep_connector.py DEPT MANIFEST BOOTSTRAP [--per-file]

runs the department's files, in the manifest's order (a JSON list of [feed, path]), through its connector: all of
them through one producer (services.ingest.run_connector_files: `povwatch connector run` with several files), or
with `--per-file` one `run_connector` each (a producer and an audit record per file, as the sweep did before).
Prints one JSON line: the summaries, seconds, CPU seconds and peak RSS of this process. Kept apart from
bench/sweep.py so that the process imports the connector only (the sweep's own imports cost 0.6 CPU s more).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages
    sys.path.insert(0, str(ROOT))

from plumbing.settings import load_settings  # noqa: E402
from services.ingest import run_connector, run_connector_files  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one department's files through its connector (the sweep's)")
    parser.add_argument("department")
    parser.add_argument("manifest", type=Path, help="JSON list of [feed, path], in the order to run")
    parser.add_argument("bootstrap")
    parser.add_argument("--per-file", action="store_true", help="a connector run (a producer) per file")
    args = parser.parse_args(argv)
    settings = load_settings().model_copy(update={"bootstrap": args.bootstrap})
    files = [(feed, Path(path)) for feed, path in json.loads(args.manifest.read_text())]
    start = time.perf_counter()
    if args.per_file:
        done = [asyncio.run(run_connector(settings, args.department, feed, path)) for feed, path in files]
    else:
        done = asyncio.run(run_connector_files(settings, args.department, files))
    times = os.times()
    peak = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"department": args.department, "seconds": time.perf_counter() - start,
                      "cpu_s": times.user + times.system, "peak_rss_mb": peak,
                      "summaries": [{"feed": s.feed, "path": str(path), "read": s.read, "published": s.published,
                                     "rejected": s.rejected, "duplicates": s.duplicates}
                                    for s, (_, path) in zip(done, files, strict=True)]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
