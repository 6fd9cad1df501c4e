"""Start the servers under test as separate processes and sample them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench import procfs

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BENCH_DIR.parent
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# Logged by `screener serve` once bound; with port 0 it is the only way to
# learn the port.
_LISTENING = re.compile(r"listening on [\d.]+:(\d+)")

# "panoramisk" runs on asyncio's own loop. "panoramisk+uvloop" runs on the
# loop of `screener serve`, so the table shows how much of the difference
# comes from the loop and how much from the server.
SERVER_KINDS = ("screener", "panoramisk", "panoramisk+uvloop", "classic")


@dataclass
class Server:
    """A server process under test, listening on 127.0.0.1:``port``."""

    kind: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def pid(self) -> int:
        """Return the server's process id."""
        return self.process.pid

    def stop(self) -> None:
        """Stop the server with SIGTERM, then SIGKILL if it does not exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def write_config(work_dir: Path) -> Path:
    """Write a Screener configuration with a free port and a fresh database."""
    path = work_dir / "screener.toml"
    database = work_dir / "calls.sqlite"
    database.unlink(missing_ok=True)
    path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = 0\n\n[database]\npath = "{database}"\n'
    )
    return path


def start_server(kind: str, work_dir: Path) -> Server:
    """Start a server of ``kind`` (one of SERVER_KINDS) and wait until it listens."""
    work_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(work_dir)
    log_path = work_dir / f"{kind}.log"
    environment = dict(os.environ, SCREENER_CONFIG=str(config))
    environment["PYTHONPATH"] = str(PROJECT_DIR)
    bin_dir = Path(sys.executable).parent
    if kind == "screener":
        command = [str(bin_dir / "screener"), "-c", str(config), "serve"]
    elif kind == "panoramisk":
        command = [sys.executable, "-m", "bench.serve_panoramisk"]
    elif kind == "panoramisk+uvloop":
        command = [sys.executable, "-m", "bench.serve_panoramisk", "--uvloop"]
    elif kind == "classic":
        program = str(bin_dir / "screener-agi")
        command = [sys.executable, "-m", "bench.classic_front", program]
    else:
        raise ValueError(f"unknown server kind {kind!r}; valid: {SERVER_KINDS}")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=environment,
            cwd=PROJECT_DIR,
        )
    assert process.stdout is not None
    try:
        if kind == "screener":
            port = _wait_for_log_port(process, log_path)
        else:
            port = _read_port(process.stdout)
    except Exception:
        process.kill()
        process.wait()
        raise
    return Server(kind, process, port, log_path)


def _read_port(stdout: IO[bytes]) -> int:
    # The bench's own servers print "PORT <n>" once they listen.
    line = stdout.readline().decode()
    if not line.startswith("PORT "):
        raise RuntimeError(f"server printed {line!r} instead of its port")
    return int(line.split()[1])


def _wait_for_log_port(process: subprocess.Popen[bytes], log_path: Path) -> int:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_text(errors="replace"))
        if match:
            return int(match.group(1))
        if process.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError(
        f"server {process.args!r} did not start listening within "
        f"{START_TIMEOUT:.0f} s; its log:\n{log_path.read_text(errors='replace')}"
    )


class Sampler:
    """Samples a server's RSS and open files while a load runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = time.perf_counter()
        # (seconds since start, value) pairs.
        self.rss_kib: list[tuple[float, int]] = []
        self.open_files: list[tuple[float, int]] = []
        self.active: list[tuple[float, int]] = []

    def sample(self, active: int) -> None:
        """Record RSS, open files and the sessions active at the generator."""
        now = time.perf_counter() - self.started
        try:
            rss = procfs.rss_kib(self.pid)
            files = procfs.open_files(self.pid)
        except (FileNotFoundError, ProcessLookupError):
            return
        self.rss_kib.append((now, rss))
        self.open_files.append((now, files))
        self.active.append((now, active))
