"""The filtered top line computed day by day (:mod:`appliance.query.daywise`) equals the plain
scan over the whole period (``Scans.aggregate_of`` of a ``Selection``) exactly, on varied data:
visitors who come back on other days, visits across midnights (split by the timeout and by
client session ids), engagement pings, conversions; days read from the log and from stored
blocks; sites in time zones whose days cut UTC blocks into slices; every kind of filter but
segments (which the plain path answers)."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import numpy as np
import pytest

from appliance.definitions.goals import GoalInput
from appliance.filters import parse_filters
from appliance.models import Event, EventKind
from appliance.periods import local_today
from appliance.query import daywise
from appliance.query.spec import Query

PAGES = ["/", "/pricing", "/blog/a", "/blog/b", "/docs/x"]
SOURCES = ["", "Google", "Facebook", "news.example"]
FILTERS = [
    "source==Google;device==Mobile",
    "country==DE",
    "page==/blog/*",
    "source!=Google",
    "entry_page==/blog/*",
    "exit_page!=/pricing",
    "channel==Organic*;country!=FR",
    "event:name==Signup",
    "goal==Pricing",
    "prop:plan==pro",
    "source==Facebook|news.example;page!=/docs/x",
]


def _events(site, rng: random.Random, days: int, dense: bool = False) -> list[Event]:
    """Visitors over ``days`` days; ``dense``: most visits around midnights, with client
    session ids changing within them (chains of visits split by session ids across midnight)."""
    start = (int(time.time()) // 86400 - days) * 86400
    out = []
    for visitor in range(1, 160):
        for _ in range(rng.randrange(1, 5)):  # visits on several days: the same visitor comes back
            at = start + rng.randrange(0, days * 86400)
            if rng.random() < (0.8 if dense else 0.3):  # near a midnight: visits that may cross it
                at = (at // 86400 + 1) * 86400 - rng.randrange(0, 3600 if dense else 1800)
            hint = rng.choice(["", "", "s1", "s2"])
            device, country = rng.choice(["Mobile", "Desktop"]), rng.choice(["DE", "FR", "US", ""])
            source = rng.choice(SOURCES)
            for _ in range(rng.randrange(1, 16 if dense else 9)):
                at += rng.choice([20, 300, 1200, 1700, 2400])
                if dense:
                    hint = rng.choice(["", "s1", "s2"])
                kind = rng.choice([EventKind.PAGEVIEW] * 5 + [EventKind.CUSTOM, EventKind.CONVERSION, EventKind.ENGAGEMENT])
                name = {EventKind.PAGEVIEW: "pageview", EventKind.CUSTOM: rng.choice(["Signup", "Download"]),
                        EventKind.CONVERSION: rng.choice(["purchase", "trial"])}.get(kind, "engagement")
                out.append(
                    Event(
                        kind=kind,
                        site_id=site.id,
                        timestamp=min(at, time.time() - 60) + rng.random(),
                        name=name,
                        visitor_id=visitor * 7919,
                        session_hint=hint if rng.random() < 0.9 else rng.choice(["s1", "s3"]),
                        path=rng.choice(PAGES),
                        source=source,
                        referrer_host=source.lower(),
                        channel=rng.choice(["Direct", "Organic Search", "Organic Social", ""]),
                        country=country,
                        device=device,
                        props={"plan": rng.choice(["pro", "free"])} if kind is EventKind.CONVERSION else {},
                        revenue=999 if kind is EventKind.CONVERSION else 0,
                        currency="EUR" if kind is EventKind.CONVERSION else "",
                        engaged_ms=1500 if kind is EventKind.ENGAGEMENT else 0,
                    )
                )
    return out


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from appliance.config import load_settings
    from appliance.runtime.appliance import Appliance

    settings = load_settings(environ={}, data_dir=str(tmp_path_factory.mktemp("daywise") / "data"))
    with Appliance(settings) as appliance:
        appliance.jobs.stop()
        sites = []
        for number, timezone in enumerate(("UTC", "America/New_York", "UTC")):
            site = appliance.sites.add(f"daywise{number}.example", timezone=timezone)
            appliance.record_sync(_events(site, random.Random(number), 6, dense=number == 2))
            appliance.goals.create(site.id, GoalInput(name="Pricing", kind="page", page="/pricing"))
            sites.append(site)
        appliance.goals.wait()
        yield appliance, sites


def _compare(appliance, sites) -> int:
    scans = appliance.stats.scans
    compared = 0
    for site in sites:
        today = local_today(site.timezone)
        for first in (today - timedelta(days=6), today - timedelta(days=3)):
            for text in FILTERS:
                query = Query(site=site, date_from=first, date_to=today, filters=parse_filters(text))
                scans.forget()
                expected = scans.aggregate_of(scans.select(query))
                scans.forget()
                assert daywise.aggregate(scans, query) == expected, (site.timezone, first, text)
                compared += expected["visits"] > 0
    return compared


def test_day_by_day_equals_the_plain_scan_from_the_log_and_from_stored_blocks(loaded):
    appliance, sites = loaded
    assert _compare(appliance, sites) >= 30  # most comparisons are over matching visits
    for site in sites:
        appliance.columns.compact(site.id, 0, int(time.time() // 86400))
    with appliance.store.read() as txn:
        assert len(appliance.columns.blocks.days(txn, sites[0].id)) >= 5  # closed days now read stored
    assert _compare(appliance, sites) >= 30
    scans = appliance.stats.scans
    for site in sites:  # blocks written before format 5 (no edge rows stored) give the same answers
        today = local_today(site.timezone)
        for text in FILTERS[:4]:
            query = Query(site=site, date_from=today - timedelta(days=6), date_to=today, filters=parse_filters(text))
            scans.forget()
            expected = daywise.aggregate(scans, query)
            scans.forget()
            frame = scans.columns.frame(site.id, *daywise.span_ms(query))
            assert any(block.has_edge_rows(scans.timeout_ms) for block, _, _ in frame.parts)
            for block, _, _ in frame.parts:
                block.format = 4
            assert daywise.aggregate(scans, query, frame) == expected
    scans.forget()


def test_stored_edge_rows_are_the_edge_chains_rows():
    """What a format-5 block stores for stitching equals the edge chains computed from its
    visits, chain by chain (a chain: a visitor's visits with no gap over the timeout)."""
    from appliance.events.sessions import edge_chains

    timeout = 10
    visitor = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    start = np.array([0, 5, 40, 3, 50, 0, 30, 90])
    end = np.array([4, 12, 45, 8, 99, 20, 35, 99])
    first_of = np.array([True] * 3 + [False] * 2 + [True] * 3)
    last_of = np.array([False] * 3 + [True] * 2 + [True] * 3)
    # visitor 0 (first chain wanted): visits 0, 1 (gap 1), not 2 (gap 28 > 10); visitor 1 (last
    # chain wanted): visit 4 alone (gap 42); visitor 2 (both): 5, 6 chained (a gap of exactly the
    # timeout is no split), 7 alone (gap 55) is its last chain
    assert edge_chains(visitor, start, end, first_of, last_of, timeout).tolist() == [
        True, True, False, False, True, True, True, True,
    ]


def test_visits_across_midnight_are_stitched_and_segments_take_the_plain_path(loaded):
    appliance, sites = loaded
    scans = appliance.stats.scans
    site = sites[0]
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today - timedelta(days=6), date_to=today, filters=parse_filters("page!=/nowhere"))
    frame = scans.columns.frame(site.id, *daywise.span_ms(query))
    local = [daywise.part_visits(block, lo, hi, scans.timeout_ms) for block, lo, hi in frame.parts]
    assert sum(len(hashes) for hashes in daywise._crossing(frame.parts, local)) > 0  # the data has visits across midnight
    assert daywise.aggregate(scans, query)["visits"] == scans.aggregate_of(scans.select(query))["visits"]
    segmented = Query(site=site, date_from=today - timedelta(days=6), date_to=today, filters=parse_filters("segment==1"))
    assert daywise.aggregate(scans, segmented) is None


def test_stored_blocks_the_cache_does_not_keep_are_released_after_their_day(loaded):
    appliance, sites = loaded
    scans = appliance.stats.scans
    site = sites[0]
    appliance.columns.compact(site.id, 0, int(time.time() // 86400))
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today - timedelta(days=6), date_to=today, filters=parse_filters("country==DE"))
    scans.forget()
    cache = scans.columns.cache
    limit = cache.limit_bytes
    cache.limit_bytes = 1  # keeps one block at most
    try:
        frame = scans.columns.frame(site.id, *daywise.span_ms(query))
        expected = scans.aggregate_of(scans.select(query))
        assert daywise.aggregate(scans, query, frame) == expected
        stored = [block for block, _, _ in frame.parts if block.stored]
        assert len(stored) >= 5
        for block in stored:
            assert cache.holds(block) or (not block.columns and not block.derived)
    finally:
        cache.limit_bytes = limit
        scans.forget()


def test_a_dictionary_by_marking_ids_equals_unique():
    from appliance.events.blocks import dictionary_of

    rng = np.random.default_rng(3)
    for top, count in ((1, 10), (300, 5000), (70_000, 20_000), (10**9, 2000), (5, 0)):
        ids = rng.integers(0, top, count).astype(np.uint32)
        dictionary, codes = dictionary_of(ids)
        distinct, inverse = np.unique(ids, return_inverse=True)
        assert dictionary.dtype == np.uint32 and np.array_equal(dictionary, distinct)
        assert np.array_equal(codes.astype(np.int64), inverse.astype(np.int64)) and codes.itemsize <= 4


def test_concurrent_scans_over_released_blocks_give_the_same_answers(loaded):
    """Two scans of one period at once, with a cache that keeps one block: each releases
    blocks the other may be reading, which then load again."""
    from concurrent.futures import ThreadPoolExecutor

    appliance, sites = loaded
    scans = appliance.stats.scans
    site = sites[2]
    appliance.columns.compact(site.id, 0, int(time.time() // 86400))
    today = local_today(site.timezone)
    queries = [
        Query(site=site, date_from=today - timedelta(days=6), date_to=today, filters=parse_filters(text))
        for text in ("source==Google;device==Mobile", "country==DE", "page==/blog/*", "entry_page==/blog/*")
    ]
    scans.forget()
    expected = [scans.aggregate_of(scans.select(query)) for query in queries]
    cache = scans.columns.cache
    limit = cache.limit_bytes
    cache.limit_bytes = 1
    try:
        scans.forget()
        with ThreadPoolExecutor(max_workers=2) as pool:
            for _ in range(3):
                assert list(pool.map(lambda query: daywise.aggregate(scans, query), queries)) == expected
    finally:
        cache.limit_bytes = limit
        scans.forget()
