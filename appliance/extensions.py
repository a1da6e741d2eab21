"""The shapes plugins exchange with the appliance beyond events: reports for exporters,
messages for notifiers, archives for backup targets, kinds of alert conditions.

Plain frozen dataclasses (they carry callables, which msgspec does not encode): a plugin
returns them from ``register_exporters``, ``register_notifiers``,
``register_backup_targets`` and ``register_alert_kinds`` (see :mod:`appliance.hooks.specs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

Cell = str | int | float | None


@dataclass(frozen=True)
class Table:
    """One table of a report: stable column names and unformatted values (numbers stay
    numbers; money in major units as a float, with its currency in a column of its own)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


@dataclass(frozen=True)
class Chart:
    """A chart as the screen draws it: a complete SVG document (vector, no script)."""

    title: str
    svg: str


@dataclass(frozen=True)
class Report:
    """What an exporter renders: the typed results of one or more queries and what they
    were asked (site, period, filters), as the screen shows them."""

    title: str
    site: str
    period: str
    generated_at: datetime
    filters: tuple[str, ...] = ()
    summary: tuple[tuple[str, Cell], ...] = ()
    tables: tuple[Table, ...] = ()
    charts: tuple[Chart, ...] = ()
    notes: str = ""


@dataclass(frozen=True)
class Exporter:
    """A file format: ``render(report, stream)`` writes the whole file to a binary stream."""

    name: str
    media_type: str
    extension: str
    render: Callable[[Report, BinaryIO], None]
    description: str = ""


@dataclass(frozen=True)
class Attachment:
    filename: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class Message:
    """What a notifier delivers: a title, a plain-text body and attachments."""

    title: str
    body: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class Notifier:
    """A delivery channel. ``send(url, message)`` delivers to one destination URL and raises
    on failure (the caller retries with back-off). ``schemes`` are the URL schemes it
    handles; ``("*",)`` accepts any URL and is tried after every notifier naming the scheme.
    ``send`` runs in a worker thread and may block."""

    name: str
    schemes: tuple[str, ...]
    send: Callable[[str, Message], None]
    description: str = ""


@dataclass(frozen=True)
class BackupTarget:
    """Somewhere a finished backup archive is shipped: ``ship(path, manifest)`` copies the
    archive (a directory or file at ``path``) and raises on failure."""

    name: str
    ship: Callable[[Path, dict], None]
    description: str = ""
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AlertParameter:
    """One setting of an alert kind. ``type`` is ``"integer"``, ``"number"``, ``"string"`` or
    ``"choice"`` (one of ``choices``); ``default`` ``None`` means required."""

    name: str
    type: str
    description: str
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class AlertReading:
    """What a check found: whether the condition holds now, and a sentence with the numbers
    behind the answer (it becomes the notification's body)."""

    firing: bool
    message: str


class AlertContext(Protocol):
    """The read-only figures a check may use, for one site at the checker's ``now``.

    Hours are UTC hour numbers (``timestamp // 3600``); days are the site's local dates."""

    site: str
    timezone: str
    now: float

    def hourly(self, metric: str, first_hour: int, last_hour: int) -> dict[int, int]:
        """``metric`` (``"pageviews"`` or ``"events"``) per hour, inclusive; absent hours are 0."""
        ...

    def last_event_at(self, since: float) -> float | None:
        """The time of the site's latest event at or after ``since`` (``None``: none)."""
        ...

    def live_visitors(self, window_seconds: int) -> int:
        """Distinct visitors with an event in the last ``window_seconds`` before ``now``."""
        ...

    def goal_totals(self, goal: str, first_day: date, last_day: date) -> tuple[int, dict[str, float]]:
        """Completions of the goal named ``goal`` and its revenue per currency (major units)
        over the local days; raises ``LookupError`` when the site has no such goal."""
        ...

    def today(self) -> date:
        """The site's local date at ``now``."""
        ...


@dataclass(frozen=True)
class AlertKind:
    """A condition alert rules can watch. ``check(context, parameters)`` returns an
    :class:`AlertReading`; ``parameters`` are validated against ``parameters`` first (defaults
    filled in). It runs every minute on the job thread: read the context, do no I/O."""

    name: str
    description: str
    parameters: tuple[AlertParameter, ...]
    check: Callable[[AlertContext, dict[str, Any]], AlertReading]
