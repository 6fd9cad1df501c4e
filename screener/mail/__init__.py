"""Trap reports by email, delivered from the outbox in the call log.

:class:`OutboxSender` is the long-running task that ``screener serve``
starts; :func:`deliver_once`, :func:`send_test`, :func:`outbox_summary` and
:func:`outbox_lines` back the ``screener mail`` commands.
"""

from screener.mail.secret import Secret, load_password
from screener.mail.sender import (
    Backoff,
    Delivery,
    OutboxSender,
    OutboxSummary,
    PassResult,
    TestResult,
    deliver_once,
    outbox_lines,
    outbox_summary,
    send_test,
)
from screener.mail.smtp import DeliveryFailed, Reply, check_settings

__all__ = [
    "Backoff",
    "Delivery",
    "DeliveryFailed",
    "OutboxSender",
    "OutboxSummary",
    "PassResult",
    "Reply",
    "Secret",
    "TestResult",
    "check_settings",
    "deliver_once",
    "load_password",
    "outbox_lines",
    "outbox_summary",
    "send_test",
]
