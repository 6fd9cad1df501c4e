"""Part 1: the FastAGI servers under load, each in its own process."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import uvloop

from bench import loadgen, procfs, servers

# Playback delay of the concurrency runs, per STREAM FILE and WAIT FOR DIGIT.
PLAYBACK_DELAY = 0.5
OPEN_LOOP_RATE = 300.0
# Classic AGI starts a Python process per call, so it runs at low concurrency
# only: 1,000 processes at once would need tens of GiB.
CLASSIC_CONCURRENCY = (1, 10)
WARM_UP_SESSIONS = 20


@dataclass(frozen=True)
class Scenario:
    """One load run: closed loop with ``concurrency`` workers, or open loop."""

    name: str
    concurrency: int
    delay: float
    duration: float
    rate: float = 0.0  # sessions started per second; 0 means closed loop


@dataclass
class Figures:
    """What one scenario measured on one server; times in milliseconds."""

    server: str
    scenario: str
    concurrency: int
    delay_ms: float
    rate: float
    sessions: int
    errors: int
    error_kinds: dict[str, int]
    elapsed_s: float
    sessions_per_s: float
    first_tone_p50_ms: float
    first_tone_p99_ms: float
    turnaround_p50_ms: float
    turnaround_p99_ms: float
    cpu_ms_per_session: float
    idle_rss_kib: int
    plateau_rss_kib: int
    rss_kib_per_session: float
    max_active: int
    mean_active: float
    open_files_start: int
    open_files_end: int
    load_average: float


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values`` (0 for an empty list)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def scenarios(quick: bool) -> list[Scenario]:
    """Return the runs of part 1; ``quick`` shortens each."""
    throughput = 3.0 if quick else 8.0
    hold = 6.0 if quick else 12.0
    return [
        Scenario("throughput", 1, 0.0, throughput),
        Scenario("throughput", 100, 0.0, throughput),
        Scenario("throughput", 1000, 0.0, throughput),
        Scenario("playback", 100, PLAYBACK_DELAY, hold),
        Scenario("playback", 1000, PLAYBACK_DELAY, hold),
        Scenario("open-300/s", 0, PLAYBACK_DELAY, hold, rate=OPEN_LOOP_RATE),
    ]


def classic_scenarios(quick: bool) -> list[Scenario]:
    """Return the runs of classic AGI, at low concurrency only."""
    duration = 3.0 if quick else 8.0
    return [Scenario("throughput", n, 0.0, duration) for n in CLASSIC_CONCURRENCY]


async def _warm_up(port: int) -> None:
    # Lazy imports, the database's first pages and the allocator's arenas
    # settle here, so the idle RSS is not measured on a cold process.
    results = await loadgen.closed_loop(port, 4, 0.0, 0.0, 0.0)
    for _ in range(WARM_UP_SESSIONS):
        await loadgen.run_session(port, 0.0, results)


def measure(kind: str, scenario: Scenario, work_dir: Path) -> Figures:
    """Start a fresh server of ``kind``, run ``scenario`` on it, stop it."""
    return measure_with_samples(kind, scenario, work_dir)[0]


def measure_with_samples(
    kind: str, scenario: Scenario, work_dir: Path
) -> tuple[Figures, servers.Sampler]:
    """Run ``scenario`` as :func:`measure` does; also return the samples."""
    server = servers.start_server(kind, work_dir)
    try:
        uvloop.run(_warm_up(server.port))
        time.sleep(0.2)
        idle_rss = procfs.rss_kib(server.pid)
        files_start = procfs.open_files(server.pid)
        sampler = servers.Sampler(server.pid)
        holder: list[loadgen.Results] = []

        def tick() -> None:
            active = holder[0].active if holder else 0
            sampler.sample(active)

        cpu_before = procfs.cpu_times(server.pid)
        started = time.perf_counter()
        results = uvloop.run(_run(scenario, server.port, tick, holder))
        elapsed = time.perf_counter() - started
        cpu_after = procfs.cpu_times(server.pid)
        time.sleep(0.2)
        files_end = procfs.open_files(server.pid)
    finally:
        server.stop()
    figures = _figures(
        kind,
        scenario,
        results,
        elapsed,
        cpu_after.total - cpu_before.total,
        idle_rss,
        sampler,
        (files_start, files_end),
    )
    return figures, sampler


async def _run(
    scenario: Scenario,
    port: int,
    tick: Callable[[], None],
    holder: list[loadgen.Results],
) -> loadgen.Results:
    # The runners create their Results object themselves; the sampler reads
    # the active count through ``holder`` once the runner has published it.
    results = loadgen.Results()
    holder.append(results)
    run: Awaitable[loadgen.Results]
    if scenario.rate > 0:
        run = loadgen.open_loop(
            port, scenario.rate, scenario.delay, scenario.duration, tick, results
        )
    else:
        ramp = min(1.0, scenario.duration / 4) if scenario.concurrency > 1 else 0.0
        run = loadgen.closed_loop(
            port,
            scenario.concurrency,
            scenario.delay,
            scenario.duration,
            ramp,
            tick,
            results,
        )
    return await run


def _figures(
    kind: str,
    scenario: Scenario,
    results: loadgen.Results,
    elapsed: float,
    cpu_seconds: float,
    idle_rss: int,
    sampler: servers.Sampler,
    open_files: tuple[int, int],
) -> Figures:
    # The plateau is the middle half of the run, when every worker is busy.
    span = max((t for t, _ in sampler.rss_kib), default=0.0)
    middle = [
        (rss, active)
        for (t, rss), (_, active) in zip(sampler.rss_kib, sampler.active, strict=True)
        if span / 4 <= t <= span * 3 / 4
    ]
    plateau_rss = int(statistics.median(rss for rss, _ in middle)) if middle else 0
    mean_active = statistics.fmean(a for _, a in middle) if middle else 0.0
    per_session = (plateau_rss - idle_rss) / mean_active if mean_active >= 1 else 0.0
    sessions = max(1, results.sessions)
    milliseconds = 1000.0
    return Figures(
        server=kind,
        scenario=scenario.name,
        concurrency=scenario.concurrency,
        delay_ms=scenario.delay * milliseconds,
        rate=scenario.rate,
        sessions=results.sessions,
        errors=results.errors,
        error_kinds=dict(results.error_kinds),
        elapsed_s=round(elapsed, 3),
        sessions_per_s=round(results.sessions / elapsed, 1),
        first_tone_p50_ms=percentile(results.first_tone, 0.5) * milliseconds,
        first_tone_p99_ms=percentile(results.first_tone, 0.99) * milliseconds,
        turnaround_p50_ms=percentile(results.turnaround, 0.5) * milliseconds,
        turnaround_p99_ms=percentile(results.turnaround, 0.99) * milliseconds,
        cpu_ms_per_session=cpu_seconds / sessions * milliseconds,
        idle_rss_kib=idle_rss,
        plateau_rss_kib=plateau_rss,
        rss_kib_per_session=round(per_session, 2),
        max_active=results.max_active,
        mean_active=round(mean_active, 1),
        open_files_start=open_files[0],
        open_files_end=open_files[1],
        load_average=procfs.load_average(),
    )


def run_part(quick: bool, kinds: tuple[str, ...]) -> list[dict[str, object]]:
    """Run every scenario on every server kind and return the figures."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="screener-bench-") as temporary:
        for scenario in scenarios(quick):
            for kind in kinds:
                if kind == "classic":
                    continue
                rows.append(_measured(kind, scenario, Path(temporary) / kind))
        if "classic" in kinds:
            for scenario in classic_scenarios(quick):
                rows.append(_measured("classic", scenario, Path(temporary) / "classic"))
    return rows


def _measured(kind: str, scenario: Scenario, work_dir: Path) -> dict[str, object]:
    figures = measure(kind, scenario, work_dir)
    print(
        f"  {kind:17} {scenario.name:10} n={scenario.concurrency:<5}"
        f" {figures.sessions_per_s:8.1f} sessions/s"
        f"  first tone p99 {figures.first_tone_p99_ms:7.2f} ms"
        f"  cpu {figures.cpu_ms_per_session:6.3f} ms/session"
        f"  errors {figures.errors}",
        flush=True,
    )
    return asdict(figures)
