"""The ``umami`` and ``goatcounter`` import kinds: other analytics tools' raw exports.

**Umami** — the website event export (a CSV of its ``website_event`` rows, from the Data
export or a database dump): ``session_id``, ``hostname``, ``url_path``, ``url_query``,
``referrer_domain``, ``referrer_path``, ``referrer_query``, ``event_type`` (1 page view,
2 custom event), ``event_name``, ``created_at`` are required; ``browser``, ``os``,
``device``, ``screen`` (``1920x1080``), ``language``, ``country``, ``region`` and the
``utm_*`` columns are used when present, any other column (``website_id``, ``visit_id``,
``city``, click ids…) is ignored.

**GoatCounter** — its CSV export of pageviews, format version 2 (header ``2Path,Title,Event,
UserAgent,Browser,System,Session,Bot,Referrer,Referrer scheme,Screen size,Location,
FirstVisit,Date``). An ``Event`` row is a custom event named by its path; rows with a
``Bot`` other than 0 are skipped; ``Referrer scheme`` ``h`` is a URL, ``g``/``o``/``c``
(a generated name such as "Hacker News", an app, a campaign) become the visit's source.

Neither tool keeps an IP address or a user agent: the row's session id stands in for them
and is hashed with the import salt of its day (:mod:`appliance.imports.visitor_ids`), so a
visitor is one per day as with Footfall's own ids. The tools filtered bots already; the
browser, OS, device and country they recorded are kept (the user agent enricher has nothing
to parse). A header without the required columns is an error naming the file and line 1.
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

from appliance.imports.hits import Hit, Parsed
from appliance.imports.sources import ImportFailure, SourceLine
from appliance.ingest.drafts import screen_class
from appliance.models import EventKind

UMAMI_REQUIRED = (
    "session_id", "hostname", "url_path", "url_query", "referrer_domain", "referrer_path", "referrer_query",
    "event_type", "event_name", "created_at",
)
GOATCOUNTER_COLUMNS = (
    "2Path", "Title", "Event", "UserAgent", "Browser", "System", "Session", "Bot", "Referrer", "Referrer scheme",
    "Screen size", "Location", "FirstVisit", "Date",
)
# Umami's browser ids (from its user agent detection) → the names Footfall's parser gives
UMAMI_BROWSERS = {
    "chrome": "Chrome", "crios": "Chrome", "firefox": "Firefox", "fxios": "Firefox", "safari": "Safari",
    "ios": "Safari", "ios-webview": "Safari", "edge": "Edge", "edge-chromium": "Edge", "edge-ios": "Edge",
    "opera": "Opera", "samsung": "Samsung Internet", "yandexbrowser": "Yandex Browser", "brave": "Brave",
    "android": "Android Browser", "chromium-webview": "Chrome WebView", "facebook": "Facebook", "instagram": "Instagram",
}


def _rows(lines: Iterator[SourceLine], kind: str) -> Iterator[tuple[SourceLine, list[str] | None]]:
    """CSV rows with the line each ends on (quoted cells may span lines); blank lines give None."""
    current: list[SourceLine] = []

    def text() -> Iterator[str]:
        for line in lines:
            current[:] = [line]
            try:
                yield line.data.decode("utf-8-sig") + "\n"
            except UnicodeDecodeError:
                raise ImportFailure(line.where, "not UTF-8") from None

    reader = csv.reader(text(), strict=True)
    try:
        for row in reader:
            yield current[0], (row or None)
    except csv.Error as error:
        raise ImportFailure(current[0].where if current else "", f"malformed {kind} CSV: {error}") from None


def _header(line: SourceLine, names: list[str], required: tuple[str, ...], kind: str) -> dict[str, int]:
    missing = [name for name in required if name not in names]
    if missing:
        raise ImportFailure(line.where, f"wrong column set for {kind}: missing {', '.join(missing)}")
    return {name: index for index, name in enumerate(names)}


@functools.lru_cache(maxsize=4096)
def _time(text: str) -> float:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # both tools write UTC
    return moment.timestamp()


class UmamiReader:
    kind = "umami"

    def __init__(self, domain: str) -> None:
        self._domain = domain

    def parse(self, lines: Iterator[SourceLine], site_id: int) -> Iterator[tuple[SourceLine, Parsed]]:
        columns: dict[str, int] | None = None
        for line, row in _rows(lines, "Umami"):
            if row is None:
                yield line, None
            elif columns is None:
                columns = _header(line, row, UMAMI_REQUIRED, "an Umami website event export")
                yield line, None
            else:
                yield line, self._hit(line, row, columns)

    def _hit(self, line: SourceLine, row: list[str], columns: dict[str, int]) -> Parsed:
        if len(row) != len(columns):
            raise ImportFailure(line.where, f"expected {len(columns)} cells, found {len(row)}")

        def cell(name: str) -> str:
            index = columns.get(name)
            return row[index] if index is not None else ""

        try:
            timestamp = _time(cell("created_at"))
        except ValueError:
            raise ImportFailure(line.where, f"created_at: not a date and time: {cell('created_at')[:40]!r}") from None
        event_type = cell("event_type")
        if event_type not in ("1", "2"):
            return f"umami event type {event_type or 'empty'}"
        query = cell("url_query")
        utm = {name: cell(name) for name in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")}
        utm = {name: value for name, value in utm.items() if value and f"{name}=" not in query}
        if utm:
            query = "&".join(part for part in (query, urlencode(utm)) if part)
        host = cell("hostname") or self._domain
        url = f"https://{host}{cell('url_path') or '/'}" + (f"?{query}" if query else "")
        referrer = ""
        if cell("referrer_domain"):
            referrer = f"https://{cell('referrer_domain')}{cell('referrer_path') or '/'}"
        width = cell("screen").split("x", 1)[0]
        browser = cell("browser")
        custom = event_type == "2"
        return Hit(
            timestamp=timestamp,
            url=url,
            referrer=referrer,
            visitor_key=f"umami:{cell('session_id')}",
            kind=EventKind.CUSTOM if custom else EventKind.PAGEVIEW,
            name=cell("event_name") if custom else "pageview",
            screen=screen_class(int(width)) if width.isdigit() else "",
            language=cell("language"),
            country=cell("country").upper()[:2],
            region=cell("region") if "-" in cell("region") else "",
            browser=UMAMI_BROWSERS.get(browser, browser.title()) if browser else "",
            os=cell("os"),
            device=cell("device").capitalize(),
        )


class GoatCounterReader:
    kind = "goatcounter"

    def __init__(self, domain: str) -> None:
        self._domain = domain

    def parse(self, lines: Iterator[SourceLine], site_id: int) -> Iterator[tuple[SourceLine, Parsed]]:
        columns: dict[str, int] | None = None
        for line, row in _rows(lines, "GoatCounter"):
            if row is None:
                yield line, None
            elif columns is None:
                if row and row[0][:1].isdigit() and row[0][:1] != "2":
                    raise ImportFailure(line.where, f"GoatCounter export format version {row[0][:1]} is not supported (2 is)")
                columns = _header(line, row, GOATCOUNTER_COLUMNS, "a GoatCounter CSV export (version 2)")
                yield line, None
            else:
                yield line, self._hit(line, row, columns)

    def _hit(self, line: SourceLine, row: list[str], columns: dict[str, int]) -> Parsed:
        if len(row) != len(columns):
            raise ImportFailure(line.where, f"expected {len(columns)} cells, found {len(row)}")
        cell = {name: row[index] for name, index in columns.items()}
        try:
            timestamp = _time(cell["Date"])
        except ValueError:
            raise ImportFailure(line.where, f"Date: not a date and time: {cell['Date'][:40]!r}") from None
        if cell["Bot"] not in ("", "0"):
            return "bot"
        event = cell["Event"].lower() in ("true", "1")
        path = cell["2Path"] or "/"
        query = ""
        referrer = cell["Referrer"]
        if cell["Referrer scheme"] in ("g", "o", "c") and referrer:
            query = "?" + urlencode({"utm_source": referrer})  # a named source, not a URL
            referrer = ""
        elif referrer and "://" not in referrer:
            referrer = "https://" + referrer
        browser, _, _ = cell["Browser"].rpartition(" ") if any(c.isdigit() for c in cell["Browser"]) else (cell["Browser"], "", "")
        system, _, _ = cell["System"].rpartition(" ") if any(c.isdigit() for c in cell["System"]) else (cell["System"], "", "")
        width = cell["Screen size"].split(",", 1)[0]
        location = cell["Location"]
        return Hit(
            timestamp=timestamp,
            url=f"https://{self._domain}{'/' if event else path}{query}",
            referrer=referrer,
            visitor_key=f"goatcounter:{cell['Session']}",
            kind=EventKind.CUSTOM if event else EventKind.PAGEVIEW,
            name=path if event else "pageview",
            screen=screen_class(int(width)) if width.isdigit() else "",
            country=location[:2].upper(),
            region=location if "-" in location else "",
            browser=browser or cell["Browser"],
            os=system or cell["System"],
        )
