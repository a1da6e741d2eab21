"""The primary's replication journal, in process: rows in commit order with their sequences,
a cursor past the trimmed front refused with 410, and no journal at all when switched off;
kept only while a standby attached (no rows without one), started by a standby's first pull
or seed, kept across a restart without a gap, and stopped when no standby attached for
``journal_hours``."""

from __future__ import annotations

import time

import pytest

from appliance.errors import DomainError
from appliance.models import Event, EventKind
from appliance.operations.replication import JournalGap


def _events(site, count, start=0):
    now = time.time() - 60
    return [
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now + i / 1000, name="pageview",
              visitor_id=7 + i, path=f"/j{start + i}")
        for i in range(count)
    ]


def test_pulls_follow_commit_order_and_confirm(make_appliance):
    appliance = make_appliance()
    site = appliance.sites.add("journal.test")
    assert appliance.replication.pull(0, 10, 0).events == []  # a standby attaches: the journal starts
    ids = appliance.record_sync(_events(site, 5)) + appliance.record_sync(_events(site, 3, start=5))
    pulled = appliance.replication.pull(0, 4, 0)
    assert [sequence for sequence, _ in pulled.events] == [1, 2, 3, 4]
    assert [event.path for _, event in pulled.events] == ["/j0", "/j1", "/j2", "/j3"]
    assert pulled.last_sequence == 8 == int(ids[-1][-8:], 16)  # the event id ends with the sequence
    rest = appliance.replication.pull(4, 100, 0)
    assert [sequence for sequence, _ in rest.events] == [5, 6, 7, 8]
    assert appliance.replication.confirmed == 4  # asking after 4 confirmed it
    assert appliance.replication.pull(8, 100, 0).events == []  # nothing newer, no wait asked

    # trimmed: a cursor before the front is told to seed from a backup
    assert appliance.trim_journal(now=time.time() + 73 * 3600) == 8
    with pytest.raises(JournalGap) as gap:
        appliance.replication.pull(3, 100, 0)
    assert gap.value.status == 410
    assert appliance.replication.pull(8, 100, 0).events == []  # a standby that had everything goes on


def test_no_journal_when_switched_off(make_appliance):
    appliance = make_appliance(replication_journal_hours=0)
    site = appliance.sites.add("nojournal.test")
    appliance.record_sync(_events(site, 3))
    with appliance.store.read() as txn:
        assert appliance.journal.bounds(txn) == (0, 0)
    with pytest.raises(DomainError) as refused:
        appliance.replication.pull(0, 10, 0)
    assert refused.value.status == 409


def _rows(appliance) -> int:
    with appliance.store.read() as txn:
        return appliance.journal.entries(txn)


def test_a_primary_without_a_standby_writes_no_journal_rows(make_appliance):
    appliance = make_appliance()
    site = appliance.sites.add("alone.test")
    appliance.record_sync(_events(site, 20))
    appliance.record_sync(_events(site, 5, start=20))
    assert _rows(appliance) == 0
    status = appliance.replication_status()
    assert status["journaling"] is False and status["journal_entries"] == 0, status
    assert status["standby_attached_at"] is None
    metrics = appliance.metrics.render().decode()
    assert "footfall_replication_journaling 0.0" in metrics


def test_a_standby_attaching_later_is_seeded_then_follows_without_a_gap(make_appliance, tmp_path):
    data = tmp_path / "primary"
    appliance = make_appliance(data_dir=data)
    site = appliance.sites.add("later.test")
    appliance.record_sync(_events(site, 5))
    assert _rows(appliance) == 0

    # a standby with nothing asks for everything: the journal starts at 5, so it must be seeded
    with pytest.raises(JournalGap):
        appliance.replication.pull(0, 100, 0)
    status = appliance.replication_status()
    assert status["journaling"] is True and status["journal_covers_after"] == 5, status
    assert "footfall_replication_journaling 1.0" in appliance.metrics.render().decode()
    appliance.record_sync(_events(site, 2, start=5))  # committed while the seed is being made
    manifest = appliance.replication.seed(str(data), str(tmp_path / "seed"))
    assert manifest["event_count"] == 7
    appliance.record_sync(_events(site, 3, start=7))
    pulled = appliance.replication.pull(manifest["event_count"], 100, 0)  # from the seed's last event
    assert [sequence for sequence, _ in pulled.events] == [8, 9, 10]
    assert [event.path for _, event in pulled.events] == ["/j7", "/j8", "/j9"]

    # a restart goes on journaling (the standby attached recently): no gap after 10
    appliance.close()
    reopened = make_appliance(data_dir=data)
    assert reopened.replication.journaling
    reopened.record_sync(_events(site, 2, start=10))
    assert [n for n, _ in reopened.replication.pull(10, 100, 0).events] == [11, 12]

    # no standby for journal_hours: the journal stops and empties; commits write no rows
    later = time.time() + 73 * 3600
    assert reopened.trim_journal(now=later) == 7
    assert not reopened.replication.journaling and _rows(reopened) == 0
    reopened.record_sync(_events(site, 2, start=12))
    assert _rows(reopened) == 0
    with pytest.raises(JournalGap):  # the old standby comes back: seeded again
        reopened.replication.pull(12, 100, 0)
    assert reopened.replication.journaling


def test_journal_always_keeps_it_from_the_first_event(make_appliance):
    appliance = make_appliance(replication_journal_always="true")
    site = appliance.sites.add("always.test")
    appliance.record_sync(_events(site, 4))
    assert _rows(appliance) == 4
    assert [n for n, _ in appliance.replication.pull(0, 100, 0).events] == [1, 2, 3, 4]
    assert appliance.trim_journal(now=time.time() + 73 * 3600) == 4  # trimmed by age, still kept
    assert appliance.replication.journaling
