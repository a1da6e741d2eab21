"""Delivering a :class:`~appliance.extensions.Message` to a destination URL through the
notifier plugins, with retry and back-off.

Used by alerts and scheduled reports alike. :func:`deliver` picks the notifier with
:meth:`Extensions.notifier_for` (a URL no notifier handles is a :class:`DomainError` at once,
never retried), calls its ``send`` and, when ``send`` raises, waits ``backoff_seconds``,
then twice that, and so on, up to ``attempts`` tries. It blocks (notifiers do network I/O
and the waits are real): call it from a worker thread or a job, never on the event loop.
``sleep`` is injectable so tests drive the back-off without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.errors import DomainError
from appliance.extensions import Message
from appliance.hooks.registry import Extensions

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """Every attempt failed; ``error`` is the last one's message."""

    def __init__(self, url: str, attempts: int, error: str) -> None:
        super().__init__(f"delivery failed after {attempts} attempt(s): {error}")
        self.url = url
        self.attempts = attempts
        self.error = error


@dataclass(frozen=True)
class Delivered:
    notifier: str
    attempts: int


def deliver(
    extensions: Extensions,
    url: str,
    message: Message,
    *,
    attempts: int = 3,
    backoff_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivered:
    """Send ``message`` to ``url``; returns which notifier delivered it after how many tries.

    Raises :class:`DomainError` (field ``url``) when no notifier handles the URL, and
    :class:`DeliveryFailed` when every one of ``attempts`` tries raised.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    notifier = extensions.notifier_for(url)
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            notifier.send(url, message)
            return Delivered(notifier=notifier.name, attempts=attempt)
        except DomainError:
            raise
        except Exception as failure:  # a notifier's own error types are its business
            error = str(failure) or type(failure).__name__
            log.warning("notifier %s: attempt %d of %d failed: %s", notifier.name, attempt, attempts, error)
            if attempt < attempts:
                sleep(backoff_seconds * 2 ** (attempt - 1))
    raise DeliveryFailed(url=url, attempts=attempts, error=error)
