"""Background jobs: the retention purge and salt rotation."""

from __future__ import annotations

import time

from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query
from appliance.runtime.jobs import purge_expired


def _view(site, when: float, visitor: int, path: str) -> Event:
    return Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=when, name="pageview", visitor_id=visitor, path=path)


def test_retention_purge_deletes_only_data_older_than_the_sites_retention(appliance):
    now = time.time()
    short = appliance.sites.add("short.test", retention_days=30)
    long = appliance.sites.add("long.test", retention_days=400)
    old, recent = now - 40 * 86400, now - 86400
    appliance.record_sync(
        [_view(short, old, 1, "/old"), _view(short, recent, 2, "/new"), _view(long, old, 3, "/kept")]
    )
    removed = purge_expired(appliance, now)
    assert removed["events"] == 1
    assert removed["counters"] > 0 and removed["sketches"] > 0

    def totals(site, when):
        day = day_from_number(day_bucket(when))
        return appliance.stats.aggregate(Query(site=site, date_from=day, date_to=day))

    assert totals(short, old)["pageviews"] == 0 and totals(short, old)["visitors"] == 0
    assert totals(short, recent)["pageviews"] == 1 and totals(short, recent)["visitors"] == 1
    assert totals(long, old)["pageviews"] == 1
    assert [e.path for e in appliance.read_events(short, 0, now + 1)] == ["/new"]
    assert [e.path for e in appliance.read_events(long, 0, now + 1)] == ["/kept"]
    # running it again removes nothing more
    assert purge_expired(appliance, now) == {"counters": 0, "sketches": 0, "events": 0, "imported": 0}


def test_jobs_run_once_rotates_salts_and_purges(appliance):
    now = time.time()
    today = int(now // 86400)
    for day in (today - 5, today - 1, today):
        appliance.visitors.salt_for(day)
    results = appliance.jobs.run_once(now)
    assert isinstance(results["rotate_salts"], int)
    assert today - 5 not in appliance.visitors._salts  # older than 48 hours: gone
    assert set(results["purge_retention"]) == {"counters", "sketches", "events", "imported"}
    assert isinstance(results["purge_credentials"], int)
    assert appliance.visitors.current_salts(now)  # today's (and yesterday's) still there


def test_deleting_a_site_deletes_its_definitions(appliance):
    from appliance.definitions.goals import GoalInput

    gone = appliance.sites.add("gone-defs.test")
    kept = appliance.sites.add("kept-defs.test")
    appliance.goals.create(gone.id, GoalInput(name="Pricing", kind="page", page="/pricing"))
    appliance.goals.create(kept.id, GoalInput(name="Pricing", kind="page", page="/pricing"))
    appliance.delete_site("gone-defs.test")
    assert appliance.goals.list(gone.id) == []
    assert [goal.name for goal in appliance.goals.list(kept.id)] == ["Pricing"]
    assert not [key for key, _ in appliance.records.scan("goal") if key.startswith(f"{gone.id:010d}/")]
