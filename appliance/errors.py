"""Errors the domain raises for a caller to answer: one base, one shape.

Every error a request can cause carries the ``field`` it is about, a ``message`` a person can
act on and the HTTP ``status`` it answers with. The web room has one handler for the base
class and the CLI one ``except``; nothing else needs to know the subclasses.
:class:`StorageFullError` (the disk or the map is full: answered 503, nothing accepted is
lost) is re-exported from the storage room, so callers above need not import it.
"""

from __future__ import annotations

from storage import StorageFullError

__all__ = ["DomainError", "QueryTimeout", "StorageFullError"]


class DomainError(ValueError):
    """Bad input or an unknown thing: ``field`` names it, ``message`` says what is wrong."""

    status = 422

    def __init__(self, field: str | None, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        if status is not None:
            self.status = status


class QueryTimeout(DomainError):
    """A query ran past its time budget (``[query] time_budget_seconds``): answered 503.

    ``computing``: the report goes on in the background into the kept answers
    (:mod:`appliance.query.flights`), so asking again (after ``retry_after`` seconds, the
    ``Retry-After`` header) gets it; a retry waits for the running computation within its
    own budget."""

    status = 503

    def __init__(self, seconds: float, *, computing: bool = False) -> None:
        if computing:
            message = (f"the query took longer than its time budget of {seconds:g} s and is still being "
                       "computed; retry in a moment and it answers from the kept result")
        else:
            message = (f"the query took longer than its time budget of {seconds:g} s; "
                       "narrow the period or the filters, or raise [query] time_budget_seconds")
        super().__init__("query", message)
        self.computing = computing
        self.retry_after = 1 if computing else None
