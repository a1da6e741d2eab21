"""The same events give the same visits, whatever order they arrive in.

The same scripted events (a few dozen visitors, visits with gaps either side of the 30-minute
timeout, a different referrer on each visit's first event, later events with other
referrers, custom events) go to one site in time order and to another shuffled in several
batches — as imports, server-side queues, offline apps and retries deliver them. The
unfiltered reports (counters and sketches) of both must be identical and equal to the
filtered path (which sessionises by time), for today (open visits) and for a closed day,
before and after the day is compacted into a column block and late events arrive for it.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta

from appliance.filters import make_filter
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query

SOURCES = [("", "Direct"), ("Google", "Organic Search"), ("Facebook", "Organic Social"), ("news.example", "Referral")]
PAGES = ["/", "/pricing", "/blog/a", "/docs", "/signup"]


def script(seed: int, start: float, visitors: int = 36) -> list[dict]:
    """Events of ``visitors`` visitors from ``start``: 1-3 visits each, 1-5 events a visit."""
    rng = random.Random(seed)
    events = []
    for visitor in range(1, visitors + 1):
        moment = start + rng.randrange(0, 3600)
        for _ in range(rng.randint(1, 3)):
            source, channel = rng.choice(SOURCES)
            for index in range(rng.randint(1, 5)):
                if index:
                    # later events of a visit: a new referrer sometimes (it must not count)
                    source, channel = rng.choice(SOURCES) if rng.random() < 0.4 else (source, channel)
                kind = EventKind.CUSTOM if rng.random() < 0.15 else EventKind.PAGEVIEW
                events.append(
                    {
                        "visitor": visitor, "ts": moment, "kind": kind, "path": rng.choice(PAGES),
                        "source": source, "channel": channel,
                    }
                )
                moment += rng.choice([60, 300, 900, 1740])  # up to 29 minutes: same visit
            moment += rng.choice([1860, 1900, 3600, 7200])  # 31 minutes or more: a new visit
    return events


def _event(site, spec) -> Event:
    kind = spec["kind"]
    return Event(
        kind=kind, site_id=site.id, timestamp=spec["ts"], name="pageview" if kind is EventKind.PAGEVIEW else "Signup",
        visitor_id=spec["visitor"] * 7919 + 1, path=spec["path"], source=spec["source"],
        referrer_host=spec["source"].lower(), channel=spec["channel"], country="DE",
    )


def send(appliance, site, specs, shuffled: bool, seed: int = 7) -> None:
    events = [_event(site, spec) for spec in specs]
    if not shuffled:
        appliance.record_sync(events)
        return
    random.Random(seed).shuffle(events)
    for lo in range(0, len(events), 9):  # several batches, each aggregated before the next
        appliance.record_sync(events[lo : lo + 9])


def report(appliance, site, first, last, filters=()):
    stats = appliance.stats
    query = Query(site=site, date_from=first, date_to=last, filters=list(filters))
    aggregate = stats.aggregate(query)
    return {
        "aggregate": {k: aggregate[k] for k in ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")},
        "timeseries": stats.timeseries(query),
        "source": stats.breakdown(query, "source", 20),
        "channel": stats.breakdown(query, "channel", 20),
        "page": stats.breakdown(query, "page", 20),
        "entry": stats.entry_pages(query, 20),
        "exit": stats.exit_pages(query, 20),
    }


def _days(timestamps):
    return day_from_number(day_bucket(min(timestamps))), day_from_number(day_bucket(max(timestamps)))


def _pair(make_appliance, start):
    """One site fed in time order on the live incremental path alone, one fed shuffled."""
    appliance = make_appliance()
    ordered, shuffled = appliance.sites.add("ordered.test"), appliance.sites.add("shuffled.test")
    specs = script(1, start)
    # No visit has closed yet in this appliance: in-order history is exact incrementally
    # (otherwise events older than the appliance's start count as possibly late).
    appliance.visits.horizon = 0.0
    send(appliance, ordered, specs, shuffled=False)
    assert appliance.rederiver.days_rederived == 0 and not appliance.rederiver.dirty
    appliance.visits.horizon = time.time()
    send(appliance, shuffled, specs, shuffled=True)
    assert appliance.rederiver.days_rederived > 0
    return appliance, ordered, shuffled, specs


def _everything():
    return [make_filter("matches", "page", ["*"])]


def test_today_shuffled_equals_time_order(make_appliance):
    # the last few hours: visits are still open in the visit table
    start = time.time() - 14 * 3600
    appliance, ordered, shuffled, specs = _pair(make_appliance, start)
    assert max(spec["ts"] for spec in specs) < time.time()
    first, last = _days([spec["ts"] for spec in specs])
    expected = report(appliance, ordered, first, last)
    assert report(appliance, shuffled, first, last) == expected
    # and the filtered path, which sessionises by time, agrees with the counters
    scanned = report(appliance, shuffled, first, last, _everything())["aggregate"]
    assert scanned == expected["aggregate"]
    # in-order events after the shuffled ones continue the re-derived open visits exactly
    later = [dict(spec, ts=spec["ts"] + 60) for spec in specs if spec["ts"] == max(s["ts"] for s in specs if s["visitor"] == spec["visitor"])]
    later = [spec for spec in later if spec["ts"] < time.time()]
    send(appliance, ordered, later, shuffled=False)
    send(appliance, shuffled, later, shuffled=False)
    assert report(appliance, shuffled, first, last) == report(appliance, ordered, first, last)


def test_closed_day_shuffled_and_late_after_compaction(make_appliance):
    two_days_ago = time.time() - 2 * 86400
    start = two_days_ago - two_days_ago % 86400 + 10 * 3600
    appliance, ordered, shuffled, specs = _pair(make_appliance, start)
    first, last = _days([spec["ts"] for spec in specs])
    expected = report(appliance, ordered, first, last)
    assert report(appliance, shuffled, first, last) == expected
    assert report(appliance, shuffled, first, last, _everything())["aggregate"] == expected["aggregate"]
    # compact the closed day (the jobs' compaction), then late events arrive for it: some
    # inside visits, some bridging two visits, some before everything (a new first event)
    appliance.jobs.run_once()
    assert appliance.columns.compactions >= 2
    late = [
        {**spec, "ts": spec["ts"] - 120, "source": "Late", "channel": "Referral", "path": "/late"}
        for spec in specs[::5]
    ]
    send(appliance, ordered, late, shuffled=True, seed=3)
    send(appliance, shuffled, late, shuffled=True, seed=4)
    # the reference: the same events, all in time order, on a fresh site
    fresh = appliance.sites.add("fresh.test")
    send(appliance, fresh, sorted(specs + late, key=lambda spec: spec["ts"]), shuffled=False)
    want = report(appliance, fresh, first, last + timedelta(days=1))
    assert report(appliance, ordered, first, last + timedelta(days=1)) == want
    assert report(appliance, shuffled, first, last + timedelta(days=1)) == want
    appliance.jobs.run_once()  # compacting the late rows changes nothing
    assert report(appliance, shuffled, first, last + timedelta(days=1)) == want
