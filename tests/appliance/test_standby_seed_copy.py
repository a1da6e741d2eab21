"""A seed, in process: the primary's archive restored as a standby's data dir follows from the
copy's last event, whatever replication state the primary's own store held (a primary that was
itself a promoted standby carries a cursor and a promotion, which would make the copy refuse
to follow), and without the primary's journal or sign-in sessions."""

from __future__ import annotations

import os
import time

from appliance.models import Event, EventKind
from appliance.operations import seeding
from appliance.operations.backups import STORE_DIRECTORY
from appliance.operations.following import promoted_at
from appliance.operations.restore import restore_backup
from storage import Store
from storage.eventlog import EventLog
from storage.journal import Journal
from storage.keys import pack_u64
from storage.records import Records


def test_a_seed_from_a_once_promoted_primary_follows_from_its_last_event(make_appliance, tmp_path):
    data = tmp_path / "primary"
    appliance = make_appliance(data_dir=data)
    site = appliance.sites.add("seed.test")
    now = time.time() - 60
    appliance.record_sync([
        Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now + i, name="pageview", visitor_id=3 + i,
              path=f"/s{i}")
        for i in range(6)
    ])
    # this primary was a standby once: its own cursor and promotion are in its store
    replication = appliance.store.db(b"replication")
    appliance.store.write(lambda txn: (txn.put(b"cursor", pack_u64(2), db=replication),
                                       txn.put(b"promoted_at", pack_u64(1), db=replication)))
    ann = appliance.accounts.create("ann", "a-long-password-1", "admin")
    appliance.accounts.create_session(ann)  # a sign-in session of the primary's
    assert list(appliance.records.scan("session"))

    stale = data / f"{seeding.SEED_PREFIX}left-behind"  # a seed whose answer never started
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    archive = tmp_path / "seed.tar"
    with open(archive, "wb") as writer:
        for chunk in seeding.seed_archive(appliance.replication, str(data)):
            writer.write(chunk)
    assert not [path for path in data.iterdir() if path.name.startswith(seeding.SEED_PREFIX)]  # cleaned up, the stale one too
    assert appliance.replication.journaling  # started before the copy: it covers what follows

    standby = tmp_path / "standby"
    seeding._extract(archive, tmp_path / "unpacked")
    manifest = restore_backup(tmp_path / "unpacked", standby)
    seeding._forget_primary_state(standby / STORE_DIRECTORY)
    assert manifest["event_count"] == 6

    store = Store(standby / STORE_DIRECTORY)
    try:
        assert promoted_at(store) is None
        with store.read() as txn:
            assert txn.get(b"cursor", db=store.db(b"replication")) is None
            assert Journal(store).bounds(txn) == (0, 0) and not Journal(store).is_kept(txn)
            assert list(Records(store).scan("session", txn)) == []
            assert list(Records(store).scan("user", txn))  # the users stay: the standby signs them in
        assert EventLog(store).next_sequence - 1 == 6  # the follower's cursor: the copy's last event
    finally:
        store.close()
