"""Dashboard widgets: each one a stats query plus one partial template (``_widget_*.html``).

:data:`WIDGETS` maps a widget's name to the function that runs its query and returns the
template context. The dashboard page renders them inline (no JavaScript needed) or as
placeholders that htmx loads one by one from ``/sites/{domain}/widgets/{name}``, so a slow
widget never holds up a fast one. Every number comes from :mod:`appliance.query.stats`, the same
functions the JSON API and the exporters call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from babel import Locale

from appliance.exports.tables import DIMENSION_LABELS
from appliance.money import format_minor
from appliance.query.stats import Stats
from web.charts import chart_points, line_chart
from web.views import CHART_METRICS, View

TOP_LIMIT = 9

# (key, label, lower is better)
TOP_METRICS: tuple[tuple[str, str, bool], ...] = (
    ("visitors", "Unique visitors", False),
    ("visits", "Total visits", False),
    ("pageviews", "Total page views", False),
    ("views_per_visit", "Views per visit", False),
    ("bounce_rate", "Bounce rate", True),
    ("visit_duration", "Visit duration", False),
)
TAB_LABELS = {
    "channel": "Channels", "source": "Sources", "referrer": "Referrers", "utm_source": "UTM source",
    "utm_medium": "UTM medium", "utm_campaign": "UTM campaign", "page": "Top pages",
    "entry": "Entry pages", "exit": "Exit pages", "country": "Countries", "region": "Regions",
    "browser": "Browsers", "os": "Operating systems", "device": "Devices", "screen": "Screen sizes",
}
EMPTY_VALUE = {"source": "Direct / None", "referrer": "Direct / None"}


def empty_label(dimension: str, value: str) -> str:
    return value or EMPTY_VALUE.get(dimension, "(none)")


# CLDR territory codes of two letters that name no country: groupings and pseudo-locales.
NOT_COUNTRIES = frozenset({"EU", "EZ", "UN", "QO", "XA", "XB", "ZZ"})


@functools.cache
def country_names(locale: str = "en") -> dict[str, str]:
    """ISO 3166-1 alpha-2 code → the country's name in ``locale``: the Unicode CLDR's territory
    names, through Babel ("GB" → "United Kingdom", "US" → "United States"). The same table
    exists for every locale Babel ships, ready for a translated UI."""
    territories = Locale.parse(locale).territories
    return {
        code: name for code, name in territories.items()
        if len(code) == 2 and code.isalpha() and code not in NOT_COUNTRIES
    }


def country_label(code: str) -> str:
    return country_names().get(code.upper(), code) if code else "(unknown)"


def flag(country: str) -> str:
    """The flag emoji of an ISO country code ("DE" → regional indicators D E)."""
    if len(country) != 2 or not country.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(letter) - ord("A")) for letter in country.upper())


def rows_with_bars(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    highest = max((row[key] for row in rows), default=0) or 1
    return [{**row, "bar": round(100 * row[key] / highest, 1)} for row in rows]


# -- the widgets -----------------------------------------------------------------------------
def top_stats(stats: Stats, view: View) -> dict[str, Any]:
    query = view.query()
    if view.comparing:
        compared = stats.aggregate_compared(query, view.compare)
        current, comparison = compared["results"], compared["comparison"]
        changes = comparison["change"]
        compared_label = f"{comparison['start_date']} – {comparison['end_date']}"
    else:
        current = stats.aggregate(query)
        changes, compared_label = {}, ""
    cards = []
    for key, label, lower_is_better in TOP_METRICS:
        change = changes.get(key)
        good = None if change is None or change == 0 else (change < 0) == lower_is_better
        cards.append({
            "key": key, "label": label, "value": current[key], "change": change, "good": good,
            "chartable": key in CHART_METRICS, "selected": key == view.metric,
        })
    return {"cards": cards, "compared_label": compared_label}


def main_chart(stats: Stats, view: View) -> dict[str, Any]:
    query = view.query()
    series = stats.timeseries(query)
    points = chart_points(series, view.metric, view.interval, view.site.timezone)
    compare = None
    if view.comparing:
        previous = stats.timeseries(query.compared(view.compare))
        compare = [float(row.get(view.metric, 0) or 0) for row in previous]
    svg = line_chart(
        points, compare=compare, metric=CHART_METRICS[view.metric],
        title=f"{CHART_METRICS[view.metric]} per {view.interval}, {view.label}",
    )
    return {"svg": svg, "points": points, "metric_label": CHART_METRICS[view.metric]}


def _breakdown_rows(stats: Stats, view: View, dimension: str, limit: int) -> list[dict[str, Any]]:
    result = stats.breakdown(view.query(), dimension, limit)
    rows = [
        {
            "value": row["value"], "label": empty_label(dimension, row["value"]),
            "visitors": row["visitors"], "pageviews": row["pageviews"],
            "filter": (dimension, row["value"]),
        }
        for row in result["results"]
    ]
    return rows_with_bars(rows, "visitors")


def _list_widget(stats: Stats, view: View, widget: str) -> dict[str, Any]:
    tab = view.tab(widget)
    columns = [("visitors", "Visitors")]
    if tab == "entry":
        raw = stats.entry_pages(view.query(), TOP_LIMIT)
        rows = [{"value": r["value"], "label": r["value"], "visitors": r["visits"], "filter": ("entry_page", r["value"])}
                for r in raw]
        columns = [("visitors", "Visits")]
    elif tab == "exit":
        raw = stats.exit_pages(view.query(), TOP_LIMIT)
        rows = [{"value": r["value"], "label": r["value"], "visitors": r["exits"], "exit_rate": r["exit_rate"],
                 "filter": ("exit_page", r["value"])} for r in raw]
        columns = [("visitors", "Exits"), ("exit_rate", "Exit rate")]
    else:
        rows = _breakdown_rows(stats, view, tab, TOP_LIMIT)
    rows = rows_with_bars(rows, "visitors")
    if tab == "country":
        for row in rows:
            row["label"] = country_label(row["value"])
    return {"widget": widget, "tab": tab, "rows": rows, "columns": columns,
            "details": tab, "dimension_label": DIMENSION_LABELS.get(tab, tab)}


def sources(stats: Stats, view: View) -> dict[str, Any]:
    return _list_widget(stats, view, "sources")


def pages(stats: Stats, view: View) -> dict[str, Any]:
    return _list_widget(stats, view, "pages")


def locations(stats: Stats, view: View) -> dict[str, Any]:
    return _list_widget(stats, view, "locations")


def devices(stats: Stats, view: View) -> dict[str, Any]:
    return _list_widget(stats, view, "devices")


def custom_events(stats: Stats, view: View) -> dict[str, Any]:
    rows = [{**row, "label": row["name"], "filter": ("event", row["name"])} for row in stats.custom_events(view.query())]
    return {"rows": rows_with_bars(rows, "visitors")}


def conversions(stats: Stats, view: View) -> dict[str, Any]:
    report = stats.conversions(view.query())
    rows = [{**goal, "label": goal["name"], "filter": ("event", goal["name"])} for goal in report["goals"]]
    return {"report": report, "rows": rows_with_bars(rows, "visitors")}


WIDGETS: dict[str, Callable[[Stats, View], dict[str, Any]]] = {
    "top": top_stats,
    "chart": main_chart,
    "sources": sources,
    "pages": pages,
    "locations": locations,
    "devices": devices,
    "events": custom_events,
    "conversions": conversions,
}
LIST_WIDGETS = ("sources", "pages", "locations", "devices")


def money(minor: int, currency: str) -> str:
    """Integer minor units shown with the currency's own digits (``1.500 KWD``, ``3 JPY``)."""
    return format_minor(minor, currency)
