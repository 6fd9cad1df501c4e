"""Run the benchmarks: ``python -m bench --part fastagi|classic|asterisk|all``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    asterisk_cost,
    classic_startup,
    fastagi_load,
    procfs,
    report,
    servers,
    soak,
)

RESULTS_DIR = servers.BENCH_DIR / "results"
PARTS = ("fastagi", "classic", "asterisk", "all")
DEFAULT_SOAK_SECONDS = 30.0


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark Screener's AGI servers."
    )
    parser.add_argument(
        "--part", choices=PARTS, default="all", help="which part to run (default all)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs, about 2 minutes in all"
    )
    parser.add_argument(
        "--servers",
        default=",".join(servers.SERVER_KINDS),
        help="comma-separated FastAGI servers to load (default: all three)",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=None,
        metavar="SECONDS",
        help="hold 1,000 concurrent sessions on Screener this long at the end"
        " (default 30 s, or none with --quick; 0 turns it off)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS_DIR,
        help="folder for results.json and latency.png (default bench/results)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parts asked for, print the table and save the results."""
    arguments = build_parser().parse_args(argv)
    kinds = tuple(kind for kind in arguments.servers.split(",") if kind)
    for kind in kinds:
        if kind not in servers.SERVER_KINDS:
            valid = ", ".join(servers.SERVER_KINDS)
            print(f"bench: unknown server {kind!r}; valid: {valid}", file=sys.stderr)
            return 2
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": procfs.machine(),
        "load_average_start": procfs.load_average(),
        "quick": arguments.quick,
    }
    started = time.monotonic()
    part = arguments.part
    if part in ("fastagi", "all"):
        print("Part 1: FastAGI at scale", flush=True)
        results["fastagi"] = fastagi_load.run_part(arguments.quick, kinds)
    if part in ("asterisk", "all"):
        print("Part 2: cost on a real Asterisk", flush=True)
        results["asterisk"] = asterisk_cost.run_part(arguments.quick)
    if part in ("classic", "all"):
        print("Part 3: classic AGI start-up", flush=True)
        results["classic"] = classic_startup.run_part(arguments.quick)
    soak_seconds = arguments.soak
    if soak_seconds is None:
        soak_seconds = 0.0 if arguments.quick else DEFAULT_SOAK_SECONDS
    if soak_seconds > 0:
        print(f"Soak: 1,000 concurrent sessions for {soak_seconds:.0f} s", flush=True)
        results["soak"] = soak.run(soak_seconds)
    results["load_average_end"] = procfs.load_average()
    results["elapsed_s"] = round(time.monotonic() - started, 1)

    print()
    print(report.table(results))
    arguments.output.mkdir(parents=True, exist_ok=True)
    json_path = arguments.output / "results.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nfigures saved to {json_path}")
    png_path = arguments.output / "latency.png"
    if report.plot(results, png_path):
        print(f"plot saved to {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
