"""The shapes plugins exchange with the appliance beyond events: reports for exporters,
messages for notifiers, archives for backup targets.

Plain frozen dataclasses (they carry callables, which msgspec does not encode): a plugin
returns them from ``register_exporters``, ``register_notifiers`` and
``register_backup_targets`` (see :mod:`appliance.hooks.specs`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

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
