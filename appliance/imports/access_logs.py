"""The ``access-log`` import kind: web-server access logs as page views.

Formats, recognised line by line:

- the *combined* log format of nginx and Apache —
  ``IP - user [10/Oct/2025:13:55:36 +0200] "GET /path?q HTTP/1.1" 200 512 "referrer" "user agent"``
  — and the *common* format (the same without referrer and user agent);
- Caddy's JSON access log (one object per line: ``ts``, ``request.client_ip`` or
  ``request.remote_ip``, ``request.method``, ``request.host``, ``request.uri``,
  ``request.headers.User-Agent`` / ``Referer``, ``status``).

A line becomes a page view when it is a ``GET`` answered 2xx or 304 for a page: requests for
static assets are skipped by path pattern (:data:`STATIC_PATTERNS`, ``*`` wildcards, matched
against the path without its query; replaceable from the command line). Everything else is
counted under its skip reason. The client IP and user agent go to the pipeline for the bot
filter, the enrichers and the visitor id, exactly as for live traffic, and are never stored.
A line in none of the formats is an error naming the file and line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from datetime import datetime

import msgspec

from appliance.imports.hits import Hit, Parsed
from appliance.imports.sources import ImportFailure, SourceLine

STATIC_PATTERNS: tuple[str, ...] = (
    "*.css", "*.js", "*.mjs", "*.map", "*.json", "*.xml", "*.txt", "*.ico", "*.png", "*.jpg", "*.jpeg",
    "*.gif", "*.svg", "*.webp", "*.avif", "*.bmp", "*.woff", "*.woff2", "*.ttf", "*.otf", "*.eot",
    "*.mp4", "*.webm", "*.mp3", "*.ogg", "*.wav", "*.pdf", "*.zip", "*.gz", "*.tar", "*.wasm",
    "/.well-known/*", "/static/*", "/assets/*", "/wp-admin/*", "/wp-json/*", "/api/*", "*.php",
)

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_LINE = re.compile(
    r'^(\S+) \S+ (\S+) \[([^\]]+)\] ' + _QUOTED + r' (\d{3}) (\S+)(?: ' + _QUOTED + " " + _QUOTED + r")?"
)
# the same without escaped quotes: several times faster, and most lines have none
_PLAIN_LINE = re.compile(r'^(\S+) \S+ (\S+) \[([^\]]+)\] "([^"\\]*)" (\d{3}) (\S+)(?: "([^"\\]*)" "([^"\\]*)")?')
# a line the parse takes without a failure, with the usual shape of the time (its day and UTC
# offset then checked once per distinct pair): what the validation pass needs to know
_CHECKED_LINE = re.compile(
    r'\S+ \S+ \S+ \[([0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}):(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9] ([+-][0-9]{4})\] '
    r'"[^"\\]*" [0-9]{3} \S'
)


class _CaddyRequest(msgspec.Struct):
    method: str = "GET"
    uri: str = "/"
    host: str = ""
    client_ip: str = ""
    remote_ip: str = ""
    remote_addr: str = ""
    headers: dict[str, list[str]] = {}


class _CaddyLine(msgspec.Struct):
    ts: float
    request: _CaddyRequest
    status: int = 0


_caddy = msgspec.json.Decoder(_CaddyLine)


_CLOCK = re.compile(r"[0-9]{2}:[0-9]{2}:[0-9]{2}")
_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


@functools.lru_cache(maxsize=1024)
def _day_and_offset(day: str, offset: str) -> float:
    """The Unix time of local midnight of ``10/Oct/2025`` at UTC offset ``+0200``."""
    moment = datetime.strptime(f"{day} {offset}", "%d/%b/%Y %z")
    return moment.timestamp()


def _log_time(text: str) -> float:
    """``10/Oct/2025:13:55:36 +0200`` as a Unix time (strptime once per day and offset: it
    costs tens of microseconds, and every line has a time; any other shape of the text goes
    to strptime whole)."""
    if len(text) == 26 and text[11] == ":" and text[20] == " " and text[3:6] in _MONTHS and _CLOCK.fullmatch(text, 12, 20):
        hours, minutes, seconds = int(text[12:14]), int(text[15:17]), int(text[18:20])
        if hours < 24 and minutes < 60 and seconds < 60:  # as strptime (a datetime has no leap second)
            return _day_and_offset(text[:11], text[21:]) + hours * 3600 + minutes * 60 + seconds
    return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp()


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\") if "\\" in text else text


def static_matcher(patterns: Sequence[str]):
    """A test ``path -> bool`` for the static-asset patterns (``*`` is any run of characters)."""
    if not patterns:
        return lambda path: False
    expression = re.compile("|".join(".*".join(map(re.escape, p.split("*"))) for p in patterns), re.IGNORECASE)
    return lambda path: expression.fullmatch(path) is not None


class AccessLogReader:
    kind = "access-log"

    def __init__(self, host: str, static_patterns: Sequence[str] = STATIC_PATTERNS) -> None:
        self._host = host  # pages are counted on the site's domain unless the log names a host
        # a log names few distinct paths: each is matched against the patterns once
        self._is_static = functools.lru_cache(maxsize=4096)(static_matcher(static_patterns))

    def parse(self, lines: Iterator[SourceLine], site_id: int) -> Iterator[tuple[SourceLine, Parsed]]:
        for line in lines:
            data = line.data
            if not data.strip():
                yield line, None
            elif data.lstrip().startswith(b"{"):
                yield line, self._caddy(line)
            else:
                yield line, self._combined(line)

    def check(self, lines: Iterator[SourceLine], site_id: int) -> Iterator[tuple[SourceLine, Parsed]]:
        """As :meth:`parse`, but a combined or common line of the usual shape only checked
        (``None``): the importer's validation pass needs the failures and the count only. Any
        other line is parsed as :meth:`parse` does, which fails it or not."""
        for line in lines:
            try:
                text = line.data.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            match = _CHECKED_LINE.match(text) if "\\" not in text else None
            if match is not None:
                try:
                    _day_and_offset(*match.groups())
                except ValueError:
                    match = None
            if match is None:
                yield from self.parse(iter((line,)), site_id)
            else:
                yield line, None

    def _page(self, line: SourceLine, method: str, status: int, target: str) -> str | None:
        """Why the request is not a page view, or None."""
        if method != "GET":
            return "not a GET request"
        if not (200 <= status < 300 or status == 304):
            return "error or redirect status"
        path = target.split("?", 1)[0]
        if not path.startswith("/"):
            return "not a page path"
        if self._is_static(path):
            return "static asset"
        return None

    def _combined(self, line: SourceLine) -> Parsed:
        try:
            text = line.data.decode("utf-8")
        except UnicodeDecodeError:
            text = line.data.decode("latin-1")
        match = _PLAIN_LINE.match(text) if "\\" not in text else None
        if match is None:
            match = _LINE.match(text)
        if match is None:
            raise ImportFailure(line.where, "not an access log line (combined, common or Caddy JSON format)")
        ip, _, when, request, status, _, referrer, agent = match.groups()
        parts = _unescape(request).split(" ")
        if len(parts) < 2:
            return "malformed request line"
        try:
            timestamp = _log_time(when)
        except ValueError:
            raise ImportFailure(line.where, f"not a log time: [{when}]") from None
        skip = self._page(line, parts[0], int(status), parts[1])
        if skip:
            return skip
        referrer = _unescape(referrer or "")
        return Hit(
            timestamp=timestamp,
            url=f"https://{self._host}{parts[1]}",
            referrer="" if referrer == "-" else referrer,
            client_ip=ip,
            user_agent="" if agent in (None, "-") else _unescape(agent),
        )

    def _caddy(self, line: SourceLine) -> Parsed:
        try:
            entry = _caddy.decode(line.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise ImportFailure(line.where, f"not a Caddy JSON access log line: {error}") from None
        request = entry.request
        skip = self._page(line, request.method, entry.status, request.uri)
        if skip:
            return skip
        headers = {name.lower(): values for name, values in request.headers.items()}
        ip = request.client_ip or request.remote_ip or request.remote_addr.rsplit(":", 1)[0].strip("[]")
        host = request.host.split(":", 1)[0] or self._host
        return Hit(
            timestamp=entry.ts,
            url=f"https://{host}{request.uri}",
            referrer=(headers.get("referer") or [""])[0],
            client_ip=ip,
            user_agent=(headers.get("user-agent") or [""])[0],
        )
