"""A soak run: hold 1,000 concurrent sessions on Screener and watch for growth."""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench import fastagi_load

SOAK_CONCURRENCY = 1000
# RSS may drift by allocator noise; more than this between the first and the
# last quarter of the run counts as growth.
RSS_GROWTH_TOLERANCE_KIB = 2048


def run(seconds: float) -> dict[str, Any]:
    """Hold SOAK_CONCURRENCY sessions with playback delay for ``seconds``."""
    scenario = fastagi_load.Scenario(
        "soak", SOAK_CONCURRENCY, fastagi_load.PLAYBACK_DELAY, seconds
    )
    with tempfile.TemporaryDirectory(prefix="screener-bench-") as temporary:
        figures, sampler = fastagi_load.measure_with_samples(
            "screener", scenario, Path(temporary)
        )
    span = max((t for t, _ in sampler.rss_kib), default=0.0)

    def quarter_median(samples: list[tuple[float, int]], low: float) -> float:
        values = [v for t, v in samples if low * span <= t <= (low + 0.25) * span]
        return statistics.median(values) if values else 0.0

    # Skip the ramp: compare the second quarter with the last one.
    rss_early = quarter_median(sampler.rss_kib, 0.25)
    rss_late = quarter_median(sampler.rss_kib, 0.75)
    files_early = quarter_median(sampler.open_files, 0.25)
    files_late = quarter_median(sampler.open_files, 0.75)
    growth = rss_late - rss_early
    passed = (
        growth <= RSS_GROWTH_TOLERANCE_KIB
        and files_late <= files_early + SOAK_CONCURRENCY * 0.05
        and figures.open_files_end <= figures.open_files_start
        and figures.errors == 0
    )
    print(
        f"  soak: {figures.sessions} sessions, {figures.errors} errors,"
        f" RSS {rss_early:.0f} -> {rss_late:.0f} KiB,"
        f" open files {files_early:.0f} -> {files_late:.0f},"
        f" idle files {figures.open_files_start} -> {figures.open_files_end}",
        flush=True,
    )
    return {
        "seconds": seconds,
        "sessions": figures.sessions,
        "errors": figures.errors,
        "rss_early_kib": rss_early,
        "rss_late_kib": rss_late,
        "rss_growth_kib": growth,
        "open_files_early": files_early,
        "open_files_late": files_late,
        "open_files_idle_start": figures.open_files_start,
        "open_files_idle_end": figures.open_files_end,
        "passed": passed,
    }
