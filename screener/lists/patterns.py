"""Backtracking bounds for name patterns, checked before a pattern is used.

Python's ``re`` engine backtracks, and it has no timeout. A pattern such as
``(a+)+$`` takes exponential time to fail on a name of many ``a``, and list
decisions run on the FastAGI event loop before the call is answered, so one
slow pattern stalls every call in progress. A name pattern is therefore
rejected unless its parsed structure bounds the work of a search:

- no backreference, conditional group or lookaround (lookahead, lookbehind);
- no repeat that can match more than once around a part that can itself
  match in more than one way (a quantifier, or an alternation). This covers
  ``(a+)+``, ``(a|a)*`` and ``(\\w+\\s?)*``, and also bounded forms such as
  ``(a{1,64}){1,10}``, which split 64 characters in billions of ways;
- at most :data:`MAX_MATCH_WORK` for the ways to match, counted over every
  start position of a search on a name of :data:`MAX_NAME_LENGTH`
  characters, times one plus the number of choice points (quantifiers and
  alternations). A quantifier such as ``\\w+`` counts as one way per
  possible repeat count, the ways of a sequence multiply, the ways of an
  alternation add up, and a pattern anchored with ``^`` is tried at one
  start only.

The count is an upper bound, so a few harmless patterns (``\\w+ \\w+``
without ``^``, three ``\\w+`` in a row) are rejected too. The error says so
and suggests anchoring the pattern or using fewer quantifiers.
"""

from __future__ import annotations

import functools
import importlib

from screener.errors import ListError

# typing is not imported at run time, for classic AGI's start-up (see
# screener.record). mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The parser behind re.compile. It is private and untyped, but its output
# (opcode and argument pairs) has been stable since Python 3.5 as sre_parse.
sre_parse = importlib.import_module("re._parser")
sre = importlib.import_module("re._constants")

# The part of a caller name that patterns see. Names on analog lines carry
# at most 15 characters; SIP display names can be longer.
MAX_NAME_LENGTH = 64
# Bound on the weighted ways to match. The slowest accepted patterns found,
# chains of optional characters such as ^a?a?...a?aa...a$, took under 0.1 ms
# (median of 20 runs) to fail on a 64-character name, with CPython 3.11 on an
# x86-64 server and the WORST_ACCEPTED table in tests/test_lists_patterns.py.
# NOTE: the weighting is a heuristic fitted to those measurements, not a
# proof. The nested-repeat rule is what rules out exponential time.
MAX_MATCH_WORK = 15_000

_REPEATS = frozenset({sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT})
_GROUPS = frozenset({sre.SUBPATTERN, sre.ATOMIC_GROUP})
_ANCHORS = frozenset({sre.AT_BEGINNING, sre.AT_BEGINNING_STRING})
_REJECTED = {
    sre.GROUPREF: "backreference",
    sre.GROUPREF_IGNORE: "backreference",
    sre.GROUPREF_EXISTS: "conditional group",
    sre.ASSERT: "lookahead or lookbehind",
    sre.ASSERT_NOT: "negative lookahead or lookbehind",
}


class UnsafePattern(ListError):
    """A name pattern whose matching time could grow without bound."""


@functools.lru_cache(maxsize=4096)
def check_backtracking(pattern: str) -> None:
    """Raise UnsafePattern if ``pattern`` could backtrack catastrophically.

    ``pattern`` must already compile. Results are cached, because a server
    checks every stored pattern again each time it reloads the lists.
    """
    parsed = sre_parse.parse(pattern)
    ways = _ways(parsed, pattern) * _start_positions(parsed)
    # Each way can pass through every choice point again (a chain such as
    # a?a?a?aaa re-runs its tail for each), so weight the ways by them.
    work = ways * (1 + _choice_points(parsed))
    if work > MAX_MATCH_WORK:
        raise UnsafePattern(
            f"name pattern {pattern!r} could be slow to match: it can try"
            f" {work} ways to match a {MAX_NAME_LENGTH}-character name, over the"
            f" limit of {MAX_MATCH_WORK}. Anchor it with ^ or use fewer"
            " quantifiers"
        )


def _start_positions(parsed: Any) -> int:
    """Return the positions a search tries: one if ``parsed`` starts with ``^``."""
    # With re.MULTILINE, ^ also matches after every line break in the name.
    if len(parsed) and not parsed.state.flags & sre.SRE_FLAG_MULTILINE:
        opcode, argument = parsed[0]
        if opcode is sre.AT and argument in _ANCHORS:
            return 1
    return MAX_NAME_LENGTH + 1


def _choice_points(items: Any) -> int:
    """Return the number of quantifiers and alternations in ``items``."""
    count = 0
    for opcode, argument in items:
        if opcode is sre.BRANCH:
            count += 1 + sum(_choice_points(branch) for branch in argument[1])
        elif opcode in _GROUPS:
            count += _choice_points(
                argument[-1] if opcode is sre.SUBPATTERN else argument
            )
        elif opcode in _REPEATS:
            low, high, inner = argument
            count += (low != high) + _choice_points(inner)
    return count


def _ways(items: Any, pattern: str) -> int:
    """Return an upper bound on the ways ``items`` can match at one position."""
    total = 1
    for opcode, argument in items:
        total *= _item_ways(opcode, argument, pattern)
        # Past this the pattern is rejected anyway, and the product could
        # otherwise grow to a huge integer.
        total = min(total, MAX_MATCH_WORK + 1)
    return total


def _item_ways(opcode: Any, argument: Any, pattern: str) -> int:
    if opcode in _REJECTED:
        raise UnsafePattern(
            f"name pattern {pattern!r} uses a {_REJECTED[opcode]}, which can"
            " make matching slow; rewrite it without one"
        )
    if opcode is sre.BRANCH:
        _, alternatives = argument
        return sum(_ways(alternative, pattern) for alternative in alternatives)
    if opcode in _GROUPS:
        # SUBPATTERN is (group, add_flags, del_flags, items) and ATOMIC_GROUP
        # is the items alone.
        inner = argument[-1] if opcode is sre.SUBPATTERN else argument
        return _ways(inner, pattern)
    if opcode in _REPEATS:
        low, high, inner = argument
        return _repeat_ways(low, high, inner, pattern)
    return 1


def _repeat_ways(low: int, high: int, inner: Any, pattern: str) -> int:
    inner_ways = _ways(inner, pattern)
    if high > 1 and inner_ways > 1:
        raise UnsafePattern(
            f"name pattern {pattern!r} repeats a part that itself contains a"
            " quantifier or an alternation (such as (a+)+ or (a|b)*), which"
            " can make matching take exponential time; rewrite it without the"
            " nested repeat, for example (a+)+ as a+"
        )
    if high <= 1:
        # An optional part: present or absent.
        return inner_ways + (1 if low == 0 else 0)
    counts = min(high, MAX_NAME_LENGTH) - low + 1
    return max(1, counts)
