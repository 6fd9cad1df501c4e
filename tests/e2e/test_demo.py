"""The README's first command without a line: `screener demo`."""

from __future__ import annotations

import subprocess
import sys

DEMO_SECONDS = 180
OUTCOMES = ("passed-owner", "trapped-decoy", "trapped-silent")


def run_demo() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "screener", "demo"],
        capture_output=True,
        text=True,
        timeout=DEMO_SECONDS,
        check=False,
    )


def test_demo_twice_shows_three_outcomes() -> None:
    # The second run checks that the first one's learning (the decoy call
    # blocks its number) does not change what the demo shows.
    for _run in range(2):
        demo = run_demo()
        assert demo.returncode == 0, demo.stdout + demo.stderr
        outcomes = [
            line.split()[1]
            for line in demo.stdout.splitlines()
            if line.strip().startswith("outcome:")
        ]
        assert outcomes == list(OUTCOMES)
