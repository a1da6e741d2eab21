"""The tables of Plausible's CSV export (``imported_<table>.csv``): for each, its dimension
column, the columns every export has, the columns some versions add, and which stored metric
(:data:`storage.imported.METRICS`) each number column feeds.

The column sets are those of Plausible's CSV importer and export queries (older exports lack
``pageviews`` in the visit tables, newer ones add versions, referrers and time-on-page sums).
:mod:`appliance.imports.plausible` reads exports with them; a site archive
(:mod:`appliance.exports.site_archive`) writes a site's imported aggregates back in this form.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSpec:
    """One table: its dimension column (``None``: the site totals), the columns every export
    has, the columns some versions add, and where each stored metric comes from."""

    dimension: str | None
    required: tuple[str, ...]
    optional: tuple[str, ...]
    metrics: dict[str, str] = field(default_factory=dict)  # stored metric -> CSV column
    text: tuple[str, ...] = ()  # columns that are text, not numbers

    @property
    def columns(self) -> frozenset[str]:
        return frozenset(("date", *self.required, *self.optional))


def _visit_table(dimension: str, *extra_text: str) -> TableSpec:
    return TableSpec(
        dimension, (dimension, "visitors", "visits", "visit_duration", "bounces"), (*extra_text, "pageviews"),
        {"visitors": "visitors", "visits": "visits", "visit_duration": "visit_duration", "bounces": "bounces",
         "pageviews": "pageviews"},
        (dimension, *extra_text),
    )


SPECS: dict[str, TableSpec] = {
    "visitors": TableSpec(
        None, ("visitors", "pageviews", "bounces", "visits", "visit_duration"), (),
        {name: name for name in ("visitors", "pageviews", "bounces", "visits", "visit_duration")},
    ),
    "sources": TableSpec(
        "source",
        ("source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "visitors", "visits", "visit_duration",
         "bounces"),
        ("referrer", "utm_source", "pageviews"),
        {"visitors": "visitors", "visits": "visits", "visit_duration": "visit_duration", "bounces": "bounces",
         "pageviews": "pageviews"},
        ("source", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"),
    ),
    "pages": TableSpec(
        "page", ("page", "visitors", "pageviews"),
        ("hostname", "visits", "exits", "time_on_page", "total_scroll_depth", "total_scroll_depth_visits",
         "total_time_on_page", "total_time_on_page_visits", "active_visitors"),
        {"visitors": "visitors", "pageviews": "pageviews", "visits": "visits", "exits": "exits"},
        ("page", "hostname"),
    ),
    "entry_pages": TableSpec(
        "entry_page", ("entry_page", "visitors", "entrances", "visit_duration", "bounces"), ("pageviews",),
        {"visitors": "visitors", "entrances": "entrances", "visit_duration": "visit_duration", "bounces": "bounces",
         "pageviews": "pageviews"},
        ("entry_page",),
    ),
    "exit_pages": TableSpec(
        "exit_page", ("exit_page", "visitors", "exits"), ("visit_duration", "bounces", "pageviews"),
        {"visitors": "visitors", "exits": "exits", "visit_duration": "visit_duration", "bounces": "bounces",
         "pageviews": "pageviews"},
        ("exit_page",),
    ),
    "locations": TableSpec(
        "country", ("country", "region", "city", "visitors", "visits", "visit_duration", "bounces"), ("pageviews",),
        {"visitors": "visitors", "visits": "visits", "visit_duration": "visit_duration", "bounces": "bounces",
         "pageviews": "pageviews"},
        ("country", "region"),
    ),
    "devices": _visit_table("device"),
    "browsers": _visit_table("browser", "browser_version"),
    "operating_systems": _visit_table("operating_system", "operating_system_version"),
    "custom_events": TableSpec(
        "name", ("name", "visitors", "events"), ("link_url", "path"),
        {"visitors": "visitors", "events": "events"}, ("name", "link_url", "path"),
    ),
}


def archive_columns(spec: TableSpec) -> list[str]:
    """The columns a site archive writes for a table: the required ones, and the optional
    ones holding a stored metric."""
    metric_columns = set(spec.metrics.values())
    return ["date", *spec.required, *(column for column in spec.optional if column in metric_columns)]
