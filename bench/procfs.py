"""Process figures read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds of one process, and of its children it has waited for."""

    own: float
    children: float

    @property
    def total(self) -> float:
        """Return own plus waited-for children's CPU seconds."""
        return self.own + self.children


def cpu_times(pid: int) -> CpuTimes:
    """Read utime+stime and cutime+cstime of ``pid`` in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name in brackets may contain spaces, so split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return CpuTimes((utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS)


def status_kib(pid: int, key: str) -> int:
    """Return a ``kB`` figure such as VmRSS or VmHWM from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(f"{key} not found in /proc/{pid}/status")


def rss_kib(pid: int) -> int:
    """Return the resident set size of ``pid`` in KiB."""
    return status_kib(pid, "VmRSS")


def open_files(pid: int) -> int:
    """Return how many file descriptors ``pid`` has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def load_average() -> float:
    """Return the one-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict[str, str]:
    """Describe the machine: core count, CPU model, memory, kernel."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return {
        "cores": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "kernel": os.uname().release,
    }
