"""Loggers that import the logging package when a line is first logged.

Classic AGI starts a Python process per call, and nothing should delay its
first command. Importing logging costs about 5 ms on Python 3.11 and about
11 ms on Debian sid's Python 3.14, where it also imports traceback and its
colour themes (estimates from ``python -X importtime``). So the modules that
classic AGI imports before its first command take their loggers from here,
and the import waits until the first line is logged.

Call :func:`configure_on_first_use` to set up handlers at the same moment,
instead of at start-up.
"""

from __future__ import annotations

from collections.abc import Callable

# typing is not imported at run time, for classic AGI's start-up (see
# screener.record). mypy treats any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Any

_setup: list[Callable[[], None]] = []
_in_use = False


def get_logger(name: str) -> logging.Logger:
    """Return a stand-in for ``logging.getLogger(name)`` that imports nothing yet."""
    # The stand-in forwards every attribute to the real logger, so callers may
    # treat it as one.
    return _LazyLogger(name)  # type: ignore[return-value]


def configure_on_first_use(setup: Callable[[], None]) -> None:
    """Run ``setup`` when a lazy logger is first used, or now if one has been."""
    if _in_use:
        setup()
    else:
        _setup.append(setup)


def _first_use() -> None:
    global _in_use
    _in_use = True
    while _setup:
        _setup.pop(0)()


class _LazyLogger:
    """A logger's name, until an attribute of the real logger is needed."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: logging.Logger | None = None

    def __getattr__(self, attribute: str) -> Any:
        # Only called for names the stand-in lacks, that is every Logger
        # method and attribute.
        logger = self._logger
        if logger is None:
            import logging

            if not _in_use:
                _first_use()
            logger = logging.getLogger(self._name)
            self._logger = logger
        return getattr(logger, attribute)
