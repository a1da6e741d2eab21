"""A person's erasure: afterwards every report equals a data dir that never had their events.

Two data dirs get the same events of many visitors over four days (three closed days, their
blocks compacted, and today in the log with open visits), with a goal; one of them also gets
the events of ``alice`` (a user id), interleaved with everyone else's. After
``personal.erase`` the first must answer every report — totals, hourly and daily series,
breakdowns, entry and exit pages, custom events, goals — exactly as the second does, and
``export`` finds nothing more. Before the erasure, ``export`` returns exactly her events.
"""

from __future__ import annotations

import random
import threading
import time

import msgspec

from appliance.cli.commands import main
from appliance.definitions.goals import GoalInput
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query

PAGES = ["/", "/pricing", "/blog/a", "/signup"]
SOURCES = ["", "Google", "news.example"]


def _events(site_id: int, visitor: int, start: float, rng: random.Random, user: bool) -> list[Event]:
    events = []
    moment = start
    for _ in range(rng.randint(1, 3)):
        source = rng.choice(SOURCES)
        for _ in range(rng.randint(1, 4)):
            custom = rng.random() < 0.2
            events.append(Event(
                kind=EventKind.CUSTOM if custom else EventKind.PAGEVIEW, site_id=site_id, timestamp=moment,
                name="Signup" if custom else "pageview", visitor_id=visitor, user_hashed=user,
                path=rng.choice(PAGES), source=source, referrer_host=source.lower(), country=rng.choice(["DE", "FR"]),
            ))
            moment += rng.choice([60, 600, 1500])
        moment += rng.choice([2000, 5000])
    return events


def _report(appliance, site, first, last):
    stats = appliance.stats
    out = {}
    for interval in ("day", "hour"):
        query = Query(site=site, date_from=first, date_to=last, interval=interval)
        out[interval] = stats.timeseries(query)
    query = Query(site=site, date_from=first, date_to=last)
    out["aggregate"] = stats.aggregate(query)
    for dimension in ("page", "source", "country"):
        out[dimension] = stats.breakdown(query, dimension, 20)
    out["entry"] = stats.entry_pages(query, 20)
    out["exit"] = stats.exit_pages(query, 20)
    out["custom"] = stats.custom_events(query)
    out["goals"] = appliance.goal_reports.report(query)
    for day in range(first.toordinal(), last.toordinal() + 1):
        one = Query(site=site, date_from=first.fromordinal(day), date_to=first.fromordinal(day))
        out[f"day {day}"] = stats.aggregate(one)
    return out


def test_erased_person_reads_as_never_sent(make_appliance):
    kept, never = make_appliance(), make_appliance()
    sites = {name: appliance.sites.add("shop.test") for name, appliance in (("kept", kept), ("never", never))}
    for name, appliance in (("kept", kept), ("never", never)):
        appliance.goals.create(sites[name].id, GoalInput(name="Signup page", kind="page", page="/signup"))
    now = time.time()
    start = now - 3 * 86400 - 4 * 3600
    rng = random.Random(5)
    others: list[tuple[int, bool, float]] = [
        (1000 + n, n % 3 == 0, start + rng.randrange(0, int(now - start - 3 * 3600))) for n in range(40)
    ]
    alice_visitor = kept.personal.visitor_of(sites["kept"], "alice")
    # two closed days and today (from UTC midnight on, in a run's first two hours of a day:
    # the first event is then today's unless the run began within a minute of midnight)
    alice_starts = [start + 600, start + 86400 + 3600, max(now - 2 * 3600, now // 86400 * 86400)]

    def everyone(site, with_alice: bool) -> list[Event]:
        rng = random.Random(11)
        events = []
        for visitor, user, moment in others:
            events += _events(site.id, visitor, moment, rng, user)
        alice_rng = random.Random(99)
        alice = [event for moment in alice_starts for event in _events(site.id, alice_visitor, moment, alice_rng, True)]
        events = [event for event in events if event.timestamp < now - 60]  # nothing in the future
        alice = [event for event in alice if event.timestamp < now - 60]
        if with_alice:
            events += alice
        return sorted(events, key=lambda event: event.timestamp), alice

    kept_events, alice_events = everyone(sites["kept"], True)
    never_events, _ = everyone(sites["never"], False)
    alice_days = {day_bucket(event.timestamp) for event in alice_events}
    assert len(alice_days) >= 3 and day_bucket(now) in alice_days
    for appliance, events in ((kept, kept_events), (never, never_events)):
        appliance.visits.horizon = 0.0  # in-order history: exact on the incremental path
        for lo in range(0, len(events), 25):
            appliance.record_sync(events[lo : lo + 25])
        today = day_bucket(now)
        for site in appliance.sites.all():
            appliance.columns.compact(site.id, 0, today - 1)  # closed days become column blocks
    assert kept.columns.blocks  # compacted rows and log rows are both erased below

    first = day_from_number(day_bucket(start))
    last = day_from_number(day_bucket(now))
    exported = kept.personal.export(sites["kept"], "alice")
    assert sorted((int(e.timestamp * 1000), e.path, e.kind) for _, e in exported) == sorted(
        (int(e.timestamp * 1000), e.path, e.kind) for e in alice_events
    )
    assert _report(kept, sites["kept"], first, last) != _report(never, sites["never"], first, last)

    erasure = kept.personal.erase(sites["kept"], "alice")
    assert erasure.events == len(alice_events) and len(erasure.days) == len(alice_days)
    assert kept.personal.export(sites["kept"], "alice") == []
    assert _report(kept, sites["kept"], first, last) == _report(never, sites["never"], first, last)
    assert kept.visits.open_visit(sites["kept"].id, alice_visitor) is None
    # nobody else's events went with hers
    assert kept.personal.erase(sites["kept"], "alice").events == 0


def test_gdpr_command_exports_and_deletes(make_appliance, tmp_path, capsys):
    data = tmp_path / "cli-data"
    appliance = make_appliance(data_dir=data)
    site = appliance.sites.add("cli.test")
    visitor = appliance.personal.visitor_of(site, "bob")
    now = time.time() - 60
    appliance.record_sync([
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now - i, name="pageview", visitor_id=v,
              user_hashed=True, path=f"/p{i}")
        for i, v in enumerate([visitor, visitor, 77])
    ])
    appliance.close()
    assert main(["gdpr", "export", "--site", "cli.test", "--user-id", "bob", "--data", str(data)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert sorted(msgspec.json.decode(line)["path"] for line in lines) == ["/p0", "/p1"]
    assert main(["gdpr", "delete", "--site", "cli.test", "--user-id", "bob", "--data", str(data)]) == 0
    assert "deleted 2 events" in capsys.readouterr().out
    assert main(["gdpr", "delete", "--site", "nowhere.test", "--user-id", "bob", "--data", str(data)]) == 2
    assert "unknown site" in capsys.readouterr().err
    reopened = make_appliance(data_dir=data)
    assert [e.path for e in reopened.read_events(site, now - 10, now + 1)] == ["/p2"]
    assert [entry.action for entry in reopened.audit.latest(5, "gdpr")] == ["gdpr.delete", "gdpr.export"]


class _Announcing:
    """The column store's rewrite lock, telling the test when the eraser asks for it."""

    def __init__(self, lock) -> None:
        self.lock, self.asked = lock, threading.Event()

    def __enter__(self):
        if threading.current_thread().name == "eraser":
            self.asked.set()
        return self.lock.__enter__()

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def test_an_erasure_during_a_compaction_does_not_deadlock(make_appliance):
    """Compaction holds the rewrite lock and then, settling its read, asks for the write mutex;
    an erasure took the mutex first and then asked for the rewrite lock: each waited for the
    other for good. Now the erasure asks for the rewrite lock before the mutex."""
    appliance = make_appliance()
    site = appliance.sites.add("order.test")
    visitor = appliance.personal.visitor_of(site, "carol")
    appliance.record_sync([Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=time.time() - 3 * 86400 + i,
                                 name="pageview", visitor_id=visitor, user_hashed=True, path="/") for i in range(3)])
    lock = appliance.columns.rewrite_lock
    announcing = appliance.columns.rewrite_lock = _Announcing(lock)
    go, settled = threading.Event(), threading.Event()

    def compaction() -> None:
        with lock:  # what compact_day holds while its read settles
            go.wait(30)
            with appliance.coordinator.mutex:
                settled.set()

    compacting = threading.Thread(target=compaction, daemon=True)
    compacting.start()
    result: list = []
    eraser = threading.Thread(target=lambda: result.append(appliance.personal.erase(site, "carol")), name="eraser",
                              daemon=True)
    eraser.start()
    assert announcing.asked.wait(30)  # the eraser waits for the rewrite lock now
    go.set()
    assert settled.wait(30), "the compaction waited for the mutex the erasure held"
    eraser.join(30)
    assert result and result[0].events == 3
