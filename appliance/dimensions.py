"""The vocabulary of stored metrics and dimensions, and their numeric ids in storage keys.

A *metric* id names one family of counters or sketches in LMDB (see :mod:`storage.keys`).
A *dimension* is an :class:`appliance.models.Event` field that breakdowns group by; each has
a page-view counter metric and a visitors sketch metric, kept in day buckets. Ids are part
of the on-disk format: never renumber, only append.
"""

from __future__ import annotations

from storage.sketches import DIMENSION_PRECISION, SITE_PRECISION

# Site totals (dimension value 0), in hour and day buckets.
PAGEVIEWS = 1
CUSTOM_EVENTS = 2  # dimension: event name id
CONVERSIONS = 3  # dimension: conversion type id
REVENUE = 4  # dimension: id of "type\x1fcurrency", value in minor units
EVENTS_TOTAL = 5  # every accepted event of any kind
EXIT_PAGES = 30  # visits by exit page (day of the visit's start)
ENGAGED_MS = 31  # foreground milliseconds by page, from engagement pings
ENGAGEMENTS = 32  # engagement pings by page
SCROLL_DEPTH = 33  # sum of max scroll depth (percent) by page
VISITORS = 100  # sketch: site visitors
EVENT_VISITORS = 101  # sketch per event name
CONVERSION_VISITORS = 102  # sketch per conversion type

# Breakdown dimensions: name -> (Event field, page-view counter metric, visitors sketch metric)
DIMENSIONS: dict[str, tuple[str, int, int]] = {
    "page": ("path", 10, 110),
    "source": ("source", 11, 111),
    "channel": ("channel", 12, 112),
    "referrer": ("referrer_host", 13, 113),
    "browser": ("browser", 14, 114),
    "os": ("os", 15, 115),
    "device": ("device", 16, 116),
    "country": ("country", 17, 117),
    "utm_source": ("utm_source", 18, 118),
    "utm_medium": ("utm_medium", 19, 119),
    "utm_campaign": ("utm_campaign", 20, 120),
    "utm_term": ("utm_term", 21, 121),
    "utm_content": ("utm_content", 22, 122),
    "screen": ("screen", 23, 123),
    "language": ("language", 24, 124),
    "hostname": ("hostname", 25, 125),
    "region": ("region", 26, 126),
    "browser_version": ("browser_version", 27, 127),
    "os_version": ("os_version", 28, 128),
    "visitor_type": ("visitor_type", 29, 129),  # New / Returning, only with the opt-in marker
}

REVENUE_SEPARATOR = "\x1f"

# Visit properties: where the visit came from, set by its first event (Plausible's rule). Every
# later event of the visit carries its visit's values in counters, filters and breakdowns,
# whatever referrer or UTM tags it was sent with itself; the event log keeps what was sent.
# Event fields, then the breakdown and filter dimensions over them.
VISIT_FIELDS: tuple[str, ...] = (
    "referrer",
    "referrer_host",
    "source",
    "medium",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
)
VISIT_PROPERTIES = frozenset(
    {"source", "channel", "referrer", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"}
)

# Dimensions whose empty value is a real row ("Direct / None" for sources). For the others an
# empty value (no UTM tag, unknown screen) is simply not counted in their breakdown.
COUNT_EMPTY = frozenset({"source", "referrer"})

# Visit metrics (see appliance.ingest.visits): the site total under the base id (dimension value 0)
# and, per breakdown dimension, base + 1 + the dimension's position in DIMENSIONS, keyed by
# the visit's entry value (for "page": the entry page).
VISITS = 200
BOUNCES = 300
VISIT_DURATION = 400  # seconds


def visit_metric(base: int, dimension: str) -> int:
    return base + 1 + list(DIMENSIONS).index(dimension)


# Metrics whose day buckets are also kept per week and month (storage.rollups): every metric
# the counted path (appliance.query.counted) sums or unions over a day range. Goal and
# materialised-segment counters are read per day and are not rolled up.
ROLLED_UP_COUNTERS = frozenset(
    {PAGEVIEWS, CUSTOM_EVENTS, CONVERSIONS, REVENUE, EXIT_PAGES, ENGAGED_MS, ENGAGEMENTS, SCROLL_DEPTH}
    | {counter for _, counter, _ in DIMENSIONS.values()}
    | {base + offset for base in (VISITS, BOUNCES, VISIT_DURATION) for offset in range(len(DIMENSIONS) + 1)}
)
ROLLED_UP_SKETCHES = {
    VISITORS: SITE_PRECISION, EVENT_VISITORS: DIMENSION_PRECISION, CONVERSION_VISITORS: DIMENSION_PRECISION
} | {
    sketch: DIMENSION_PRECISION for _, _, sketch in DIMENSIONS.values()
}
