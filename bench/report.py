"""The results table with its targets, and the latency plot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]


@dataclass(frozen=True)
class Target:
    """One comparison: our figure, the reference figure and the rule."""

    name: str
    ours: float | None
    reference: float | None
    limit: str
    passed: bool | None


def _find(rows: list[Row], server: str, scenario: str, concurrency: int) -> Row | None:
    for row in rows:
        if (
            row["server"] == server
            and row["scenario"] == scenario
            and row["concurrency"] == concurrency
        ):
            return row
    return None


def _ratio_target(
    name: str,
    ours: Row | None,
    reference: Row | None,
    key: str,
    limit: str,
    check: Callable[[float, float], bool],
) -> Target:
    if ours is None or reference is None:
        return Target(name, None, None, limit, None)
    value, base = float(ours[key]), float(reference[key])
    return Target(name, value, base, limit, check(value, base))


def targets(results: dict[str, Any]) -> list[Target]:
    """Compare the figures of one run with the targets."""
    rows: list[Row] = results.get("fastagi", [])
    found: list[Target] = []
    ours_100 = _find(rows, "screener", "throughput", 100)
    panoramisk_100 = _find(rows, "panoramisk", "throughput", 100)
    found.append(
        _ratio_target(
            "sessions/s at 100, no delay",
            ours_100,
            panoramisk_100,
            "sessions_per_s",
            ">= 1.2x panoramisk",
            lambda ours, base: ours >= 1.2 * base,
        )
    )
    found.append(
        _ratio_target(
            "server CPU ms/session",
            ours_100,
            panoramisk_100,
            "cpu_ms_per_session",
            "<= 0.8x panoramisk",
            lambda ours, base: ours <= 0.8 * base,
        )
    )
    # For context only: the same server on the event loop that Screener uses.
    uvloop_100 = _find(rows, "panoramisk+uvloop", "throughput", 100)
    if ours_100 is not None and uvloop_100 is not None:
        for name, key in (
            ("sessions/s at 100 (same loop)", "sessions_per_s"),
            ("server CPU ms/session (same loop)", "cpu_ms_per_session"),
        ):
            found.append(
                Target(
                    name,
                    float(ours_100[key]),
                    float(uvloop_100[key]),
                    "context: panoramisk+uvloop",
                    None,
                )
            )
    ours_open = _find(rows, "screener", "open-300/s", 0)
    panoramisk_open = _find(rows, "panoramisk", "open-300/s", 0)
    if ours_open is not None:
        p99 = float(ours_open["first_tone_p99_ms"])
        reference = (
            None if panoramisk_open is None else panoramisk_open["first_tone_p99_ms"]
        )
        found.append(
            Target(
                "first tone p99 ms, 300 calls/s",
                p99,
                reference,
                "<= 5 ms, 0 errors",
                p99 <= 5.0 and ours_open["errors"] == 0,
            )
        )
    ours_hold = _find(rows, "screener", "playback", 1000)
    panoramisk_hold = _find(rows, "panoramisk", "playback", 1000)
    if ours_hold is not None:
        per_session = float(ours_hold["rss_kib_per_session"])
        reference = (
            None if panoramisk_hold is None else panoramisk_hold["rss_kib_per_session"]
        )
        found.append(
            Target(
                "RSS KiB per concurrent session",
                per_session,
                reference,
                "<= 16 KiB",
                per_session <= 16.0,
            )
        )
    classic = results.get("classic")
    if classic:
        found += _classic_targets(classic, "this Python")
        if "lab_root" in classic:
            found += _classic_targets(classic["lab_root"], "lab Python")
    asterisk = results.get("asterisk")
    if asterisk:
        # A call that did not walk the whole menu would make the ratio lie.
        found.append(
            Target(
                "Asterisk+Screener CPU ms/call",
                asterisk["screener_cpu_ms_per_call"],
                asterisk["dialplan_cpu_ms_per_call"],
                "<= 1.3x pure dialplan",
                asterisk["screener_cpu_ms_per_call"]
                <= 1.3 * asterisk["dialplan_cpu_ms_per_call"]
                and asterisk["all_calls_walked_the_menu"],
            )
        )
    soak = results.get("soak")
    if soak:
        found.append(
            Target(
                f"soak {soak['seconds']:.0f} s RSS growth KiB",
                soak["rss_growth_kib"],
                None,
                "no growth in RSS or open files",
                soak["passed"],
            )
        )
    return found


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def table(results: dict[str, Any]) -> str:
    """Format the figures and the targets as plain-text tables."""
    lines: list[str] = []
    rows: list[Row] = results.get("fastagi", [])
    if rows:
        header = (
            f"{'server':17} {'scenario':10} {'n':>5} {'sess/s':>8} {'tone p50':>9}"
            f" {'tone p99':>9} {'turn p99':>9} {'cpu/sess':>9} {'KiB/sess':>9}"
            f" {'active':>7} {'errors':>6} {'load':>5}"
        )
        lines += ["FastAGI at scale (times in ms)", header, "-" * len(header)]
        for row in rows:
            lines.append(
                f"{row['server']:17} {row['scenario']:10} {row['concurrency']:>5}"
                f" {row['sessions_per_s']:>8.1f} {row['first_tone_p50_ms']:>9.2f}"
                f" {row['first_tone_p99_ms']:>9.2f} {row['turnaround_p99_ms']:>9.3f}"
                f" {row['cpu_ms_per_session']:>9.3f}"
                f" {row['rss_kib_per_session']:>9.1f} {row['mean_active']:>7.0f}"
                f" {row['errors']:>6} {row['load_average']:>5.2f}"
            )
        lines.append("")
    classic = results.get("classic")
    if classic:
        lines += _classic_lines(classic, "this machine's")
        if "lab_root" in classic:
            lines += _classic_lines(classic["lab_root"], "the lab root's")
    asterisk = results.get("asterisk")
    if asterisk:
        lines += _asterisk_lines(asterisk)
    found = targets(results)
    if found:
        header = f"{'target':34} {'ours':>8} {'reference':>10}  {'rule':27} result"
        lines += ["Targets", header, "-" * len(header)]
        for target in found:
            verdict = {True: "PASS", False: "MISS", None: "-"}[target.passed]
            lines.append(
                f"{target.name:34} {_number(target.ours):>8}"
                f" {_number(target.reference):>10}  {target.limit:27} {verdict}"
            )
    return "\n".join(lines)


def _classic_targets(classic: dict[str, Any], where: str) -> list[Target]:
    ours_ms = float(classic["screener-agi"]["median_ms"])
    bare_ms = float(classic["bare pyst2"]["median_ms"])
    found = [
        Target(
            f"classic start-up ms, {where}",
            ours_ms,
            bare_ms,
            "<= 1.5x bare pyst2",
            ours_ms <= 1.5 * bare_ms,
        )
    ]
    floor = classic.get("pyst2+toml+db")
    if floor is not None:
        found.append(
            Target(
                f"classic floor ms, {where}",
                float(floor["median_ms"]),
                bare_ms,
                "context: bare pyst2",
                None,
            )
        )
    return found


def _classic_lines(classic: dict[str, Any], where: str) -> list[str]:
    python = classic.get("python", "?")
    lines = [
        f"Classic AGI start-up to first command, {where} Python {python}"
        f" ({classic['repetitions']} runs)"
    ]
    for name in ("screener-agi", "bare pyst2", "pyst2+toml+db"):
        figures = classic.get(name)
        if figures is None:
            continue
        lines.append(
            f"  {name:13} median {figures['median_ms']:6.1f} ms"
            f"  p90 {figures['p90_ms']:6.1f} ms"
            f"  peak RSS {figures['peak_rss_kib_median'] / 1024:5.1f} MiB"
        )
    imports = classic["imports"]
    biggest = ", ".join(
        f"{item['module']} {item['cumulative_ms']:.1f} ms"
        for item in imports["biggest"][:5]
    )
    lines.append(f"  biggest imports of screener-agi: {biggest}")
    heavy = ", ".join(imports["heavy_before_first_command"]) or "none"
    lines.append(f"  heavy modules before the first command: {heavy}")
    lines.append("")
    return lines


def _asterisk_lines(asterisk: dict[str, Any]) -> list[str]:
    lines = [
        f"Cost on a real Asterisk ({asterisk['calls']} silent Local/ calls per menu,"
        f" {asterisk['concurrency']} at a time, {asterisk['wait_seconds']:g} s wait)"
    ]
    for name in ("screener", "dialplan"):
        figures = asterisk[name]
        by_process = ", ".join(
            f"{process} {ms:.2f}"
            for process, ms in figures["cpu_ms_per_call_by_process"].items()
        )
        lines.append(
            f"  {name:9} {figures['cpu_ms_per_call']:7.2f} CPU ms/call ({by_process})"
            f"  wall {figures['wall_s']:5.1f} s"
            f"  mean call {figures['mean_call_s']:.2f} s"
            f"  lost {figures['lost_calls']}  short {figures['short_calls']}"
        )
    lines.append(
        f"  ratio {asterisk['ratio']}, call log {asterisk['call_log_outcomes']},"
        f" every call walked the menu: {asterisk['all_calls_walked_the_menu']}"
    )
    lines.append("")
    return lines


def plot(results: dict[str, Any], path: Path) -> bool:
    """Plot first-tone latency against concurrency; return False without data."""
    rows: list[Row] = [
        row for row in results.get("fastagi", []) if row["scenario"] != "open-300/s"
    ]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, scenario in zip(axes, ("throughput", "playback"), strict=True):
        for server in sorted({row["server"] for row in rows}):
            points = sorted(
                (row["concurrency"], row["first_tone_p50_ms"], row["first_tone_p99_ms"])
                for row in rows
                if row["server"] == server and row["scenario"] == scenario
            )
            if not points:
                continue
            concurrency = [point[0] for point in points]
            axis.plot(concurrency, [p[2] for p in points], marker="o", label=server)
            axis.plot(
                concurrency,
                [p[1] for p in points],
                linestyle=":",
                marker=".",
                alpha=0.6,
            )
        delay = "no playback delay" if scenario == "throughput" else "500 ms playback"
        axis.set_title(f"Connect to first STREAM FILE, {delay}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("concurrent sessions")
        axis.set_ylabel("ms (solid p99, dotted p50)")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
