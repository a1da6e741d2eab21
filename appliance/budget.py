"""Time budgets: a query stops with :class:`~appliance.errors.QueryTimeout` when it runs late.

``time_budget(seconds)`` sets a deadline for a block of code in a context variable, so it
follows a request into the worker thread that runs its handler (asyncio and anyio copy the
context there); an enclosing budget wins, so nested calls share the first deadline. The scan
loops call :func:`check_budget` between blocks and every few hundred distinct values, which
costs one clock read. Code outside any budget (jobs, back-fills in their own threads, the
CLI) is never stopped. Python cannot interrupt a thread, so the bound is cooperative: each
step between two checks is small (one day's block, 256 string tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from appliance.errors import QueryTimeout

_deadline: ContextVar[tuple[float, float] | None] = ContextVar("footfall_query_deadline", default=None)


@contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """Run the block under a deadline ``seconds`` from now (None or 0: no deadline)."""
    if not seconds or _deadline.get() is not None:
        yield
        return
    token = _deadline.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def check_budget() -> None:
    """Raise QueryTimeout if the current query is past its deadline."""
    budget = _deadline.get()
    if budget is not None and time.monotonic() > budget[0]:
        raise QueryTimeout(budget[1])


@contextmanager
def unbounded() -> Iterator[None]:
    """Run the block without the caller's deadline (upkeep a query's settled read triggers,
    which must not stop halfway because that query is running late)."""
    token = _deadline.set(None)
    try:
        yield
    finally:
        _deadline.reset(token)
