"""Time budgets: a query stops with :class:`~appliance.errors.QueryTimeout` when it runs late.

``time_budget(seconds)`` sets a :class:`Deadline` for a block of code in a context variable, so
it follows a request into the worker thread that runs its handler (asyncio and anyio copy the
context there); an enclosing budget wins, so nested calls share the first deadline. The scan
loops call :func:`check_budget` between blocks and every few hundred distinct values, which
costs one clock read. Code outside any budget (jobs, back-fills in their own threads, the
CLI) is never stopped. Python cannot interrupt a thread, so the bound is cooperative: each
step between two checks is small (one day's block, 256 string tests). A deadline is an
object, so its owner can move it: a report finished in the background after its request ran
out of time (:mod:`appliance.query.flights`) runs under a deadline of its own that is pulled
in to stop it (:meth:`Deadline.cancel`) at shutdown or when no one is left to want the answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from appliance.errors import QueryTimeout
from appliance.turns import TURNS


class Deadline:
    """The monotonic time a query must end by, and the budget in seconds it was given."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def cancel(self) -> None:
        """Stop the query at its next check."""
        self.at = float("-inf")


_deadline: ContextVar[Deadline | None] = ContextVar("footfall_query_deadline", default=None)


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` from now (None or 0: no deadline)."""
    if not seconds or _deadline.get() is not None:
        yield
        return
    with under(Deadline(seconds)):
        yield


def check_budget() -> None:
    """Raise QueryTimeout if the current query is past its deadline (and, a request that held
    its turn long, let the next one have it first: :mod:`appliance.turns`)."""
    TURNS.pause()
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline.at:
        raise QueryTimeout(deadline.seconds)


def current_deadline() -> Deadline | None:
    """The deadline the running code is under, if any."""
    return _deadline.get()


@contextmanager
def under(deadline: Deadline | None) -> Iterator[None]:
    """Run the block under ``deadline`` whatever the caller's (None: no deadline)."""
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def unbounded():
    """Run the block without the caller's deadline (upkeep a query's settled read triggers,
    which must not stop halfway because that query is running late)."""
    return under(None)
