"""Demo traffic: believable generated visits for a site, so a new dashboard is alive at once.

:func:`fill_demo_site` writes ``days`` of history up to now: visits that arrive with a weekly
rhythm and slow growth, from search engines, social networks, newsletters and tagged
campaigns; each visit views a few pages (with engagement pings), some fire custom events and
some convert with revenue. Events go through the same enrichment hooks as real traffic (user
agent, referrer and channel), carry historical timestamps and are written with
:meth:`Appliance.record_sync` in time-ordered batches, so counters, sketches, visits and the
event log are exactly what real traffic would have produced. Deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from appliance.models import Event, EventKind, RequestContext, Site
from appliance.money import to_minor
from appliance.periods import day_start_timestamp, local_today

BATCH = 2000
DEMO_VISITS_PER_DAY = 100  # about 35k events over 90 days: a first start stays quick

# (path, weight as a landing page, weight as a next page)
PAGES: tuple[tuple[str, int, int], ...] = (
    ("/", 40, 10),
    ("/pricing", 8, 20),
    ("/features", 6, 16),
    ("/blog", 5, 8),
    ("/blog/privacy-first-analytics", 12, 3),
    ("/blog/lmdb-in-production", 7, 3),
    ("/blog/why-no-cookies", 6, 2),
    ("/docs", 5, 12),
    ("/docs/install", 3, 10),
    ("/docs/tracking-script", 2, 8),
    ("/docs/api", 2, 6),
    ("/about", 1, 4),
    ("/contact", 1, 3),
    ("/signup", 1, 6),
    ("/checkout", 0, 3),
)

# (referrer URL, page query string, weight): the page query carries the UTM tags.
SOURCES: tuple[tuple[str, str, int], ...] = (
    ("", "", 30),
    ("https://www.google.com/", "", 28),
    ("https://www.bing.com/", "", 4),
    ("https://duckduckgo.com/", "", 5),
    ("https://news.ycombinator.com/", "", 6),
    ("https://www.reddit.com/r/selfhosted/", "", 5),
    ("https://t.co/abc", "", 3),
    ("https://www.linkedin.com/", "", 2),
    ("https://github.com/footfall/footfall", "", 4),
    ("https://chatgpt.com/", "", 2),
    ("https://www.youtube.com/", "", 1),
    ("", "utm_source=newsletter&utm_medium=email&utm_campaign=monthly", 4),
    ("https://www.google.com/", "utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=web+analytics", 3),
    ("https://www.facebook.com/", "utm_source=facebook&utm_medium=paid_social&utm_campaign=launch", 2),
    ("", "utm_source=partner-blog&utm_medium=affiliate&utm_campaign=spring", 1),
)

USER_AGENTS: tuple[tuple[str, str, int], ...] = (
    # (user agent, screen class, weight)
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "Desktop", 26),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", "Laptop", 12),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36", "Laptop", 9),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "Desktop", 6),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0", "Desktop", 5),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0", "Laptop", 6),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "Mobile", 18),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36", "Mobile", 12),
    ("Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36", "Mobile", 4),
    ("Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "Tablet", 3),
)

# (country, language, weight)
COUNTRIES: tuple[tuple[str, str, int], ...] = (
    ("US", "en-US", 30), ("DE", "de-DE", 14), ("GB", "en-GB", 9), ("FR", "fr-FR", 7),
    ("NL", "nl-NL", 5), ("CA", "en-CA", 5), ("IN", "en-IN", 6), ("BR", "pt-BR", 4),
    ("JP", "ja-JP", 3), ("SE", "sv-SE", 3), ("ES", "es-ES", 3), ("PL", "pl-PL", 2),
    ("AU", "en-AU", 3), ("CH", "de-CH", 2), ("IT", "it-IT", 2),
)

CUSTOM_EVENTS: tuple[tuple[str, float, dict[str, str]], ...] = (
    # (name, probability per visit, properties)
    ("Signup", 0.04, {"plan": "free"}),
    ("Download", 0.06, {"file": "footfall.tar.gz"}),
    ("Outbound Link: Click", 0.08, {"url": "https://github.com/footfall/footfall"}),
    ("Newsletter", 0.02, {}),
)

CONVERSIONS: tuple[tuple[str, float, tuple[float, ...], str], ...] = (
    # (type, probability per visit, amounts, currency)
    ("purchase", 0.012, (19.0, 49.0, 99.0), "EUR"),
    ("subscription", 0.008, (9.0, 29.0), "USD"),
)


@dataclass
class DemoReport:
    events: int
    visits: int
    seconds: float


def _weighted(rng: random.Random, table, weight_index: int = -1):
    return rng.choices(table, weights=[row[weight_index] for row in table])[0]


def _visits_on(day_index: int, days: int, visits_per_day: int, weekday: int, rng: random.Random) -> int:
    """Fewer visits at weekends, slow growth over the period, some noise and rare spikes."""
    growth = 0.7 + 0.6 * (day_index / max(days - 1, 1))
    weekly = 0.65 if weekday >= 5 else 1.0
    spike = 2.5 if rng.random() < 0.03 else 1.0
    return max(1, int(visits_per_day * growth * weekly * spike * rng.uniform(0.85, 1.15)))


def _hour_of_visit(rng: random.Random) -> float:
    """Seconds into the day: a daytime bump (around 14:00) over a low night floor."""
    if rng.random() < 0.15:
        return rng.uniform(0, 86400)
    return min(86399.0, max(0.0, rng.gauss(14 * 3600, 4 * 3600)))


def generate_visit(
    rng: random.Random, site: Site, start: float, enrich: Callable[[Event, RequestContext], Event]
) -> list[Event]:
    """The events of one visit starting at ``start``."""
    user_agent, screen, _ = _weighted(rng, USER_AGENTS)
    referrer, query, _ = _weighted(rng, SOURCES)
    country, language, _ = _weighted(rng, COUNTRIES)
    visitor = rng.getrandbits(63)
    host = site.domain.split(":")[0]
    page_query = dict(part.split("=", 1) for part in query.split("&")) if query else {}
    context = RequestContext(client_ip="127.0.0.1", user_agent=user_agent, received_at=start, page_query=page_query)
    length = 1 if rng.random() < 0.42 else min(8, 1 + int(rng.expovariate(0.6)) + 1)
    path = _weighted(rng, PAGES, 1)[0]
    clock = start
    events: list[Event] = []

    def make(kind: EventKind, name: str, first: bool, **fields) -> Event:
        event = Event(
            kind=kind, site_id=site.id, timestamp=clock, name=name, visitor_id=visitor,
            hostname=host, path=path, referrer=referrer if first else "", screen=screen,
            language=language, **fields,
        )
        enriched = enrich(event, context if first else msgspec.structs.replace(context, page_query={}))
        # The demo chooses countries itself (the loopback address has none).
        return msgspec.structs.replace(enriched, country=country, visitor_id=visitor)

    first_event: Event | None = None
    for number in range(length):
        view = make(EventKind.PAGEVIEW, "pageview", number == 0)
        if first_event is None:
            first_event = view
        # later events of the visit keep the entry's source fields, as the tracker would not resend them
        events.append(view)
        dwell = rng.expovariate(1 / 55)
        if rng.random() < 0.7:
            events.append(msgspec.structs.replace(
                view, kind=EventKind.ENGAGEMENT, name="engagement", timestamp=clock + dwell,
                engaged_ms=int(dwell * 1000), scroll_depth=rng.choice((25, 50, 75, 100)),
            ))
        clock += dwell + rng.uniform(1, 5)
        if number + 1 < length:
            path = _weighted(rng, PAGES, 1)[0]
    assert first_event is not None
    for name, probability, props in CUSTOM_EVENTS:
        if rng.random() < probability * (2 if length > 1 else 0.5):
            clock += rng.uniform(2, 20)
            events.append(msgspec.structs.replace(first_event, kind=EventKind.CUSTOM, name=name,
                                                  timestamp=clock, path=path, props=dict(props)))
    for name, probability, amounts, currency in CONVERSIONS:
        if rng.random() < probability * (3 if length > 2 else 0.5):
            clock += rng.uniform(10, 120)
            amount = rng.choice(amounts)
            events.append(msgspec.structs.replace(
                first_event, kind=EventKind.CONVERSION, name=name, timestamp=clock, path="/checkout",
                revenue=to_minor(amount, currency), currency=currency, props={"sku": f"plan-{int(amount)}"},
            ))
    return events


def fill_demo_site(
    appliance, site: Site, *, days: int = 90, visits_per_day: int = DEMO_VISITS_PER_DAY, seed: int = 1,
    now: float | None = None, progress: Callable[[int], None] | None = None,
) -> DemoReport:
    """Write ``days`` days (ending now) of generated traffic for ``site``."""
    began = time.monotonic()
    now = time.time() if now is None else now
    rng = random.Random(seed)
    enrich = appliance.pipeline.run_enrichers
    today = local_today(site.timezone, now)
    events: list[Event] = []
    visits = 0
    for day_index in range(days):
        day = today.fromordinal(today.toordinal() - (days - 1 - day_index))
        midnight = day_start_timestamp(day, site.timezone)
        count = _visits_on(day_index, days, visits_per_day, day.weekday(), rng)
        if day == today:  # only the part of today that has happened
            count = math.ceil(count * max(0.0, min(1.0, (now - midnight) / 86400)))
        starts = sorted(midnight + _hour_of_visit(rng) for _ in range(count))
        for start in starts:
            if start > now - 60:
                continue
            events.extend(event for event in generate_visit(rng, site, start, enrich) if event.timestamp < now)
            visits += 1
    events.sort(key=lambda event: event.timestamp)
    for offset in range(0, len(events), BATCH):
        appliance.record_sync(events[offset : offset + BATCH])
        if progress is not None:
            progress(min(offset + BATCH, len(events)))
    return DemoReport(events=len(events), visits=visits, seconds=round(time.monotonic() - began, 2))


def site_is_empty(appliance, site: Site) -> bool:
    """No event of ``site`` in its retention period (the demo never overwrites real data)."""
    now = time.time()
    # closed days live in column blocks, not in the log: ask the one reader of both
    for _ in appliance.events(site, now - site.retention_days * 86400, now + 86400):
        return False
    return True
