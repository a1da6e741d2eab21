"""Daily salts: today's and yesterday's are kept, older ones deleted; user ids use a fixed secret."""

from __future__ import annotations

from appliance.ingest.visitors import VisitorHasher
from storage import Store
from storage.records import Records

DAY = 86400
TODAY = 20_513  # 2026-03-01, as days since the epoch
NOON = TODAY * DAY + DAY / 2
IP = "198.51.100.23"
AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def hasher(store) -> VisitorHasher:
    return VisitorHasher(store, Records(store))


def stored_salt_days(store) -> set[int]:
    return {int(day) for day, _ in Records(store).scan("salt")}


def test_rotate_deletes_salts_older_than_48_hours(store):
    visitors = hasher(store)
    for day in range(TODAY, TODAY - 4, -1):  # newest first, so no new day expires the others
        visitors.salt_for(day)
    assert stored_salt_days(store) == {TODAY - 3, TODAY - 2, TODAY - 1, TODAY}
    ids_before = {
        day: visitors.anonymous_id(1, IP, AGENT, day * DAY + 60)
        for day in range(TODAY - 3, TODAY + 1)
    }

    removed = visitors.rotate(now=NOON)

    assert removed == 2
    assert stored_salt_days(store) == {TODAY - 1, TODAY}
    assert stored_salt_days(store) == set(hasher(store)._salts)  # what a restart would load
    # Today's and yesterday's visitors are still recognised; older ids cannot be recomputed.
    reopened = hasher(store)
    assert reopened.anonymous_id(1, IP, AGENT, TODAY * DAY + 60) == ids_before[TODAY]
    assert reopened.anonymous_id(1, IP, AGENT, (TODAY - 1) * DAY + 60) == ids_before[TODAY - 1]
    assert reopened.anonymous_id(1, IP, AGENT, (TODAY - 2) * DAY + 60) != ids_before[TODAY - 2]
    assert visitors.rotate(now=NOON) == 0


def test_the_first_salt_of_a_new_day_deletes_expired_ones(store):
    visitors = hasher(store)
    visitors.anonymous_id(1, IP, AGENT, (TODAY - 2) * DAY + 60)
    visitors.anonymous_id(1, IP, AGENT, (TODAY - 1) * DAY + 60)

    visitors.anonymous_id(1, IP, AGENT, TODAY * DAY + 60)

    assert stored_salt_days(store) == {TODAY - 1, TODAY}


def test_current_salts_are_today_then_yesterday(store):
    visitors = hasher(store)

    only_today = visitors.current_salts(now=NOON)
    assert only_today == [visitors.salt_for(TODAY)]

    yesterday = visitors.salt_for(TODAY - 1)
    visitors.salt_for(TODAY - 2)
    salts = visitors.current_salts(now=NOON)

    assert salts == [visitors.salt_for(TODAY), yesterday]
    assert len(set(salts)) == 2 and all(len(salt) == 32 for salt in salts)


def test_salts_are_random_per_day_and_persist_across_reopen(store):
    visitors = hasher(store)
    today = visitors.salt_for(TODAY)
    tomorrow = visitors.salt_for(TODAY + 1)

    assert today != tomorrow
    assert hasher(store).salt_for(TODAY + 1) == tomorrow


def test_anonymous_ids_depend_on_site_address_agent_and_day(store):
    visitors = hasher(store)
    base = visitors.anonymous_id(1, IP, AGENT, NOON)

    assert visitors.anonymous_id(1, IP, AGENT, TODAY * DAY) == base  # same UTC day
    assert visitors.anonymous_id(1, IP, AGENT, TODAY * DAY + DAY - 1) == base
    assert visitors.anonymous_id(2, IP, AGENT, NOON) != base
    assert visitors.anonymous_id(1, "198.51.100.24", AGENT, NOON) != base
    assert visitors.anonymous_id(1, IP, AGENT + " extra", NOON) != base
    assert visitors.anonymous_id(1, IP, AGENT, NOON + DAY) != base
    assert 0 < base < 2**64


def test_user_id_hashes_are_stable_across_days_and_restarts_but_not_sites(store):
    visitors = hasher(store)
    user = visitors.user_id_hash(1, "customer-42")

    visitors.rotate(now=NOON + 10 * DAY)
    assert visitors.user_id_hash(1, "customer-42") == user
    assert hasher(store).user_id_hash(1, "customer-42") == user
    assert visitors.user_id_hash(2, "customer-42") != user
    assert visitors.user_id_hash(1, "customer-43") != user


def test_each_installation_has_its_own_user_id_secret(tmp_path):
    first = Store(tmp_path / "one")
    second = Store(tmp_path / "two")
    try:
        assert hasher(first).user_id_hash(1, "customer-42") != hasher(second).user_id_hash(
            1, "customer-42"
        )
    finally:
        first.close()
        second.close()
