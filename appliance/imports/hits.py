"""What an import reader makes of a line: a finished event, a raw hit, or a reason to skip it.

A :class:`Hit` is a request as another tool or a web server saw it (time, page URL,
referrer, the visitor's IP address and user agent, or a stand-in identity when the tool kept
no address); the importer runs it through the ingest pipeline's steps like live traffic. A
finished :class:`~appliance.models.Event` (Footfall's own export) has been through them
already. A skip is a short reason, counted in the import report.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import msgspec

from appliance.imports.sources import SourceLine
from appliance.models import Event, EventKind


class Hit(msgspec.Struct, kw_only=True):
    """One request or event of another tool (see the module docstring)."""

    timestamp: float
    url: str
    referrer: str = ""
    client_ip: str = ""
    user_agent: str = ""
    visitor_key: str = ""  # stands in for (IP, user agent) when the tool kept neither (hashed like them)
    kind: EventKind = EventKind.PAGEVIEW
    name: str = "pageview"
    props: dict[str, str] = {}
    screen: str = ""
    language: str = ""
    country: str = ""
    region: str = ""
    browser: str = ""
    os: str = ""
    device: str = ""


Parsed = Event | Hit | str | None  # None: a line with nothing to import (blank, a header)


class Reader(Protocol):
    """Turns the lines of a source into parsed items; raises
    :class:`~appliance.imports.sources.ImportFailure` naming the line on bad input. A reader
    may also have ``check(lines, site_id)``, the same items and failures with what is costly
    to build left out (``None``), which the importer's validation pass then uses."""

    kind: str

    def parse(self, lines: Iterator[SourceLine], site_id: int) -> Iterator[tuple[SourceLine, Parsed]]: ...
