"""Measure how fast the allow and block lists decide a call.

Run with ``python -m bench.lists [--entries N] [--calls N]``. It fills a fresh
SQLite call log with N entries (by default 100,000: 80% exact numbers, 19.9%
prefixes, 0.1% name patterns, spread over both lists), then prints

* the time to build the in-memory index from SQLite, as ``screener serve``
  does at start and after each list change;
* decide() alone, over callers that hit an exact number, a prefix, a name
  pattern or nothing;
* a server's per-call cost: the change-counter read plus decide();
* the classic AGI cost: reading the candidate entries for one caller.

Times are wall-clock on whatever machine runs it; the figures are estimates
of that machine, not limits.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from screener.callerid import CallerId, parse
from screener.lists import lookup
from screener.lists import store as list_store
from screener.lists.rules import EntryKind, ListEntry, ListIndex, ListName
from screener.storage import open_store

NAME_WORDS = ("ACME", "SALES", "CREDIT", "SURVEY", "HOLIDAY", "WARRANTY", "LOANS")


def make_entries(count: int, rng: random.Random) -> list[ListEntry]:
    """Return ``count`` distinct entries in the proportions of the docstring."""
    patterns = max(1, count // 1000)
    prefixes = count // 5 - patterns
    numbers = count - prefixes - patterns
    entries: list[ListEntry] = []
    for serial in range(numbers):
        list_name = ListName.ALLOW if serial % 10 == 0 else ListName.BLOCK
        value = f"+1{200 + serial // 10_000_000:03d}{serial % 10_000_000:07d}"
        entries.append(ListEntry(list_name, EntryKind.NUMBER, value, source="bench"))
    for serial in range(prefixes):
        # Exchange prefixes (+1 NPA NXX) of area codes 300-999.
        value = f"+1{300 + serial // 800}{200 + serial % 800}"
        entries.append(ListEntry(ListName.BLOCK, EntryKind.PREFIX, value))
    for serial in range(patterns):
        word = NAME_WORDS[serial % len(NAME_WORDS)]
        entries.append(
            ListEntry(ListName.BLOCK, EntryKind.NAME, f"^{word} {serial}\\b")
        )
    rng.shuffle(entries)
    return entries


def make_callers(count: int, rng: random.Random) -> list[CallerId]:
    """Return callers: a quarter each hit a number, a prefix, a name or nothing."""
    callers = []
    for serial in range(count):
        kind = serial % 4
        if kind == 0:
            number = f"1200{rng.randrange(0, 80_000):07d}"
            callers.append(parse(number, "KIM"))
        elif kind == 1:
            callers.append(parse(f"1{rng.randrange(300, 320)}2001234", "PAT"))
        elif kind == 2:
            callers.append(parse("P", f"ACME {rng.randrange(0, 7)}"))
        else:
            callers.append(parse(f"1299{rng.randrange(0, 10_000_000):07d}", "LEE"))
    return callers


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """Return p50, p99 and max of ``samples``, in microseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e6, p99 * 1e6, ordered[-1] * 1e6


def time_each(callers: Sequence[CallerId], decide: Callable[[CallerId], object]) -> str:
    samples = []
    for caller in callers:
        start = time.perf_counter()
        decide(caller)
        samples.append(time.perf_counter() - start)
    p50, p99, worst = percentiles(samples)
    return f"p50 {p50:7.1f} us   p99 {p99:7.1f} us   max {worst:8.1f} us"


def run(entry_count: int, call_count: int) -> None:
    """Fill a database, then print the build and decide timings."""
    rng = random.Random(1)
    entries = make_entries(entry_count, rng)
    callers = make_callers(call_count, rng)
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(Path(folder) / "bench.sqlite")
        start = time.perf_counter()
        list_store.add_entries(store, entries)
        print(f"entries: {entry_count} stored in {time.perf_counter() - start:.2f} s")

        builds = []
        for _ in range(3):
            start = time.perf_counter()
            index = list_store.load_index(store)
            builds.append(time.perf_counter() - start)
        print(f"index build from SQLite: best {min(builds) * 1000:.0f} ms of 3")
        start = time.perf_counter()
        ListIndex(entries)
        print(f"index build from memory: {(time.perf_counter() - start) * 1000:.0f} ms")

        verdicts = [index.decide(caller, "menu").verdict for caller in callers]
        counts = {verdict: verdicts.count(verdict) for verdict in set(verdicts)}
        print(f"verdicts over {call_count} callers: {counts}")
        print("decide(), index only:        ", time_each(callers, _decider(index)))
        live = list_store.LiveLists(store)
        live.refresh()
        print("counter read + decide():     ", time_each(callers, _decider(live)))
        connection = lookup.open_lookup(store.path)
        assert connection is not None
        one_call = lookup.OneCallLists(connection)
        print(
            "classic: candidates + decide:",
            time_each(callers[: max(1, call_count // 10)], _decider(one_call)),
        )
        connection.close()
        store.close()


def _decider(
    lists: list_store.LiveLists | lookup.OneCallLists | ListIndex,
) -> Callable[[CallerId], object]:
    return lambda caller: lists.decide(caller, "menu")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the arguments and run the measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="list size")
    parser.add_argument("--calls", type=int, default=20_000, help="calls decided")
    arguments = parser.parse_args(argv)
    run(arguments.entries, arguments.calls)


if __name__ == "__main__":
    main()
