"""Tables from query results: the stats vocabulary's rows (lists of dicts, nested dicts) made
into :class:`appliance.extensions.Table` s with stable column names, and the words a report
uses to say what it was asked (period, filters).

Column names are the API's own keys, so a CSV header reads like the JSON it stands for; a
nested value becomes dotted columns (``revenue.EUR.total_minor``), a list a JSON text. Numbers
stay numbers: formatting is the renderer's business, never the table's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

from appliance.extensions import Cell, Table
from appliance.filters import Filter
from appliance.query.spec import Query

DIMENSION_LABELS = {
    "page": "Page", "source": "Source", "channel": "Channel", "referrer": "Referrer",
    "browser": "Browser", "os": "OS", "device": "Device", "country": "Country", "region": "Region",
    "utm_source": "UTM source", "utm_medium": "UTM medium", "utm_campaign": "UTM campaign",
    "utm_term": "UTM term", "utm_content": "UTM content", "screen": "Screen size",
    "language": "Language", "hostname": "Hostname", "browser_version": "Browser version",
    "os_version": "OS version", "entry": "Entry page", "exit": "Exit page",
    "entry_page": "Entry page", "exit_page": "Exit page", "event": "Event",
}
METRIC_LABELS = {
    "visitors": "Unique visitors", "visits": "Total visits", "pageviews": "Total page views",
    "views_per_visit": "Views per visit", "bounce_rate": "Bounce rate (%)",
    "visit_duration": "Visit duration (s)", "events": "Events", "conversions": "Conversions",
    "conversion_rate": "Conversion rate (%)", "exits": "Exits", "exit_rate": "Exit rate (%)",
}


def cell(value: object) -> Cell:
    """A value as a table cell: numbers and text as they are, anything else as JSON text."""
    if value is None or isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    if isinstance(value, bool):
        return int(value)
    return msgspec.json.encode(value).decode()


def flatten(row: Mapping[str, object], prefix: str = "") -> dict[str, Cell]:
    """A result row with nested dicts spelled out as dotted keys."""
    out: dict[str, Cell] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = cell(value)
    return out


def rows_table(title: str, rows: Iterable[Mapping[str, object]], columns: Sequence[str] | None = None) -> Table:
    """Rows of one shape as a table: ``columns`` in that order, or every key in order of first
    appearance (a row without a key gets an empty cell)."""
    flat = [flatten(row) for row in rows]
    if columns is None:
        seen: dict[str, None] = {}
        for row in flat:
            seen.update(dict.fromkeys(row))
        columns = list(seen)
    return Table(title=title, columns=tuple(columns), rows=tuple(tuple(row.get(c) for c in columns) for row in flat))


def totals_table(title: str, totals: Mapping[str, object]) -> Table:
    """One row of totals, a column per metric (scalars only)."""
    flat = {key: value for key, value in flatten(totals).items()}
    return Table(title=title, columns=tuple(flat), rows=(tuple(flat.values()),))


def table_records(table: Table) -> list[dict[str, Cell]]:
    """A table back as a list of dicts (the JSON exporter's and the tests' view)."""
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


def describe_filter(condition: Filter) -> str:
    values = " | ".join(condition.values)
    return f"{condition.dimension} {condition.operator.replace('_', ' ')} {values}"


def describe_filters(query: Query) -> tuple[str, ...]:
    return tuple(describe_filter(condition) for condition in query.filters)


def describe_period(query: Query) -> str:
    """``2026-11-01 – 2026-11-30 (UTC, by day)``: the inclusive local dates a query covers."""
    span = query.date_from.isoformat()
    if query.date_to != query.date_from:
        span += f" – {query.date_to.isoformat()}"
    return f"{span} ({query.site.timezone}, by {query.interval})"
