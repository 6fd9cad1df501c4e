"""Part 3: start-up of a classic AGI process, to its first command.

Each repetition starts the program with pipes for stdin and stdout, writes a
canned environment block, reads until the first command line, takes the peak
RSS from wait4 and kills the process. ``python -X importtime`` then lists what
the program imported before that first command.

The database holds a household's call log with allow and block lists, as
``screener serve`` or an earlier call leaves it, so the list lookup reads a
real table. The caller is on neither list, so the first command is ANSWER.
"""

from __future__ import annotations

import compileall
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

from bench import loadgen, procfs, servers
from bench.fastagi_load import percentile
from screener import lab
from screener.lists import store as list_store
from screener.lists.rules import EntryKind, ListEntry, ListName
from screener.storage import open_store

BARE_PYST2 = servers.BENCH_DIR / "bare_pyst2.py"
FLOOR_SCRIPT = servers.BENCH_DIR / "floor_classic.py"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
# The code of the screener-agi console script that pip installs.
CONSOLE_SCRIPT = "import sys; from screener.agi.classic import main; sys.exit(main())"
FIRST_LINE_TIMEOUT = 10.0
# Modules that must not load before the first command of screener-agi.
# sqlite3 is not one of them: the lists decide whether a call is answered,
# so the floor script loads it too.
HEAVY_MODULES = (
    "pydub",
    "aiosmtplib",
    "screener.storage",
    "screener.callbatch",
    "logging",
    "asyncio",
    "email",
    "numpy",
    "panoramisk",
)


def write_database(path: Path) -> None:
    """Create the call log at ``path`` with lists of a household's size."""
    entries = [
        ListEntry(ListName.BLOCK, EntryKind.NUMBER, f"+1555000{index:04d}")
        for index in range(500)
    ]
    entries += [
        ListEntry(ListName.ALLOW, EntryKind.NUMBER, f"+1666000{index:04d}")
        for index in range(200)
    ]
    entries += [
        ListEntry(ListName.BLOCK, EntryKind.PREFIX, f"+1{area}")
        for area in range(800, 820)
    ]
    entries += [
        ListEntry(ListName.BLOCK, EntryKind.NAME, pattern)
        for pattern in ("^acme", "solar", r"^v\d+$")
    ]
    store = open_store(path)
    try:
        list_store.add_entries(store, entries)
    finally:
        store.close()


def _programs() -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    return {
        "screener-agi": [str(bin_dir / "screener-agi")],
        "bare pyst2": [sys.executable, str(BARE_PYST2)],
        "pyst2+toml+db": [sys.executable, str(FLOOR_SCRIPT)],
    }


def time_to_first_command(
    command: list[str], environment: dict[str, str]
) -> tuple[float, int, str, bytes]:
    """Start ``command``; return (seconds, peak RSS KiB, first line, stderr)."""
    full = command
    started = time.perf_counter()
    process = subprocess.Popen(
        full,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        process.stdin.write(loadgen.environment_block(1))
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], FIRST_LINE_TIMEOUT)
        line = (
            process.stdout.readline().decode(errors="replace").strip() if ready else ""
        )
        elapsed = time.perf_counter() - started
        peak = procfs.status_kib(process.pid, "VmHWM") if line else 0
    finally:
        process.send_signal(signal.SIGKILL)
        stderr = process.stderr.read() if process.stderr is not None else b""
        process.wait()
        process.stdin.close()
        process.stdout.close()
    if not line:
        raise RuntimeError(
            f"{full!r} sent no command within {FIRST_LINE_TIMEOUT:.0f} s;"
            f" its stderr:\n{stderr.decode(errors='replace')}"
        )
    return elapsed, peak, line, stderr


def run_part(quick: bool) -> dict[str, object]:
    """Measure the programs on this Python and, as root, on the lab's."""
    repetitions = 20 if quick else 100
    # An installed package has its bytecode compiled, but a working tree
    # edited since its last import, run with PYTHONDONTWRITEBYTECODE set,
    # would compile the changed modules again at every start.
    compileall.compile_dir(servers.PROJECT_DIR / "screener", quiet=1)
    with tempfile.TemporaryDirectory(prefix="screener-bench-") as temporary:
        config = servers.write_config(Path(temporary))
        write_database(Path(temporary) / "calls.sqlite")
        environment = dict(os.environ, SCREENER_CONFIG=str(config))
        environment["PYTHONPATH"] = str(servers.PROJECT_DIR)
        print(f"  this machine's Python {platform.python_version()}", flush=True)
        programs = _programs()
        importtime = [sys.executable, "-X", "importtime", *programs["screener-agi"]]
        result = _measure(programs, environment, repetitions, importtime)
    result["python"] = platform.python_version()
    if os.geteuid() == 0:
        result["lab_root"] = _measure_in_lab_root(repetitions)
    else:
        print("  lab root skipped: it needs root for chroot", flush=True)
    return result


def _measure(
    programs: dict[str, list[str]],
    environment: dict[str, str],
    repetitions: int,
    importtime: list[str],
) -> dict[str, object]:
    """Time ``programs``, alternating them, and list screener-agi's imports."""
    times: dict[str, list[float]] = {name: [] for name in programs}
    peaks: dict[str, list[int]] = {name: [] for name in programs}
    first_lines: dict[str, str] = {}
    for _ in range(repetitions):
        for name, command in programs.items():
            seconds, peak, line, _stderr = time_to_first_command(command, environment)
            times[name].append(seconds)
            peaks[name].append(peak)
            first_lines[name] = line
    imports = import_times(importtime, environment)
    result: dict[str, object] = {"repetitions": repetitions}
    for name in programs:
        result[name] = {
            "first_command": first_lines[name],
            "median_ms": statistics.median(times[name]) * 1000,
            "p90_ms": percentile(times[name], 0.9) * 1000,
            "peak_rss_kib_median": int(statistics.median(peaks[name])),
        }
    result["imports"] = imports
    for name in programs:
        figures = result[name]
        assert isinstance(figures, dict)
        print(
            f"  {name:13} first command {figures['median_ms']:6.1f} ms median,"
            f" {figures['p90_ms']:6.1f} ms p90,"
            f" peak RSS {figures['peak_rss_kib_median'] / 1024:5.1f} MiB",
            flush=True,
        )
    return result


def _measure_in_lab_root(repetitions: int) -> dict[str, object]:
    """Time the programs on the Python that Asterisk runs them with in the lab.

    The lab root is Debian sid, like the image for real hardware, so its
    python3 is the one that starts screener-agi for each call there. The
    programs run as a console script runs them, with the package and pyst2
    on PYTHONPATH as the lab installs them.
    """
    root = lab.provision()
    lab.install_project(root)
    scripts_dir = root / "opt/screener/bench"
    scripts_dir.mkdir(parents=True, exist_ok=True)
    for script in (BARE_PYST2, FLOOR_SCRIPT):
        shutil.copy(script, scripts_dir / script.name)
    inside = PurePosixPath("/opt/screener/bench")
    python = [CHROOT, str(root), "/usr/bin/python3"]
    version = subprocess.run(
        [*python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"  lab root's Python {version} (Debian sid, as Asterisk runs it)", flush=True
    )
    programs = {
        "screener-agi": [*python, "-c", CONSOLE_SCRIPT],
        "bare pyst2": [*python, str(inside / BARE_PYST2.name)],
        "pyst2+toml+db": [*python, str(inside / FLOOR_SCRIPT.name)],
    }
    with tempfile.TemporaryDirectory(dir=root / "tmp") as temporary:
        work_dir = PurePosixPath("/") / Path(temporary).relative_to(root).as_posix()
        Path(temporary, "screener.toml").write_text(
            f'[database]\npath = "{work_dir}/calls.sqlite"\n'
        )
        write_database(Path(temporary) / "calls.sqlite")
        environment = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(lab.PROJECT_LIB_DIR),
            "SCREENER_CONFIG": f"{work_dir}/screener.toml",
        }
        # The first runs write the root's bytecode caches.
        for command in programs.values():
            time_to_first_command(command, environment)
        importtime = [*python, "-X", "importtime", "-c", CONSOLE_SCRIPT]
        result = _measure(programs, environment, repetitions, importtime)
    result["python"] = version
    return result


def import_times(command: list[str], environment: dict[str, str]) -> dict[str, object]:
    """Run ``command``, a ``python -X importtime`` line, up to its first command."""
    _seconds, _peak, _line, stderr = time_to_first_command(command, environment)
    # Lines read "import time: <self us> | <cumulative us> | <indent><name>",
    # with two spaces of indent per nesting level.
    modules: list[tuple[str, int, int]] = []
    for raw in stderr.decode(errors="replace").splitlines():
        if not raw.startswith("import time:") or "imported package" in raw:
            continue
        _self, cumulative, indented = raw.split("|")
        name = indented[1:]
        depth = (len(name) - len(name.lstrip())) // 2
        modules.append((name.strip(), int(cumulative), depth))
    top_level = sorted(
        (m for m in modules if m[2] == 0), key=lambda m: m[1], reverse=True
    )
    loaded = {name for name, _, _ in modules}
    heavy = [
        name
        for name in loaded
        if any(name == h or name.startswith(h + ".") for h in HEAVY_MODULES)
    ]
    return {
        "total_ms": sum(m[1] for m in modules if m[2] == 0) / 1000,
        "biggest": [
            {"module": name, "cumulative_ms": us / 1000}
            for name, us, _ in top_level[:8]
        ],
        "heavy_before_first_command": sorted(heavy),
    }
