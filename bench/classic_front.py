"""A TCP front that runs ``screener-agi`` once per connection, for comparison.

Each accepted connection becomes the new process's stdin and stdout, so the
load generator speaks to classic AGI exactly as it speaks FastAGI. The front
waits for every child, so its /proc ``cutime`` and ``cstime`` hold the
children's CPU time. Run as ``python -m bench.classic_front PROGRAM``; it
prints ``PORT <n>`` once listening on 127.0.0.1 and exits on SIGTERM.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time


def reap_children() -> None:
    """Wait for finished children for ever, so their CPU time is counted."""
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(0.005)


def serve(program: str) -> None:
    """Accept connections and start ``program`` on each."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    threading.Thread(target=reap_children, daemon=True).start()
    stderr = sys.stderr.fileno()
    while True:
        connection, _peer = listener.accept()
        with connection:
            fd = connection.fileno()
            os.posix_spawn(
                program,
                [program],
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, fd, 0),
                    (os.POSIX_SPAWN_DUP2, fd, 1),
                    (os.POSIX_SPAWN_DUP2, stderr, 2),
                ],
            )


if __name__ == "__main__":
    serve(sys.argv[1])
