"""The journal only while a standby needs it, and a late standby seeded, with real servers on 127.0.0.1.

A primary that no standby has attached to keeps no replication journal: its events are written
once (status and /metrics say so). A standby started later with an empty data dir finds no
journal covering the first event, so ``footfall serve --follow`` seeds it: the primary starts its
journal, sends a copy of its store taken in one read transaction, and the standby follows the
journal from the copy's last event. Events keep arriving during the seed; once the standby has
caught up it holds exactly the primary's counts and event ids.
"""

from __future__ import annotations

import httpx

from tests.e2e.test_standby_failover import (
    SITE,
    Loader,
    caught_up,
    pageviews,
    start_standby,
    status,
    stored_ids,
    wait_until,
)
from tests.servers import start_server

BATCH = 20  # Loader's batch size


def test_no_journal_without_a_standby_then_a_late_standby_is_seeded_and_converges(tmp_path):
    primary = start_server(tmp_path / "primary")
    standby = None
    try:
        with primary.client(headers=primary.auth()) as client:
            assert client.post("/api/v1/sites", json={"domain": SITE}).status_code == 201
            key = client.post("/api/v1/apikeys", json={"name": "standby"}).json()["key"]
        primary.token = key
        before = Loader(primary, "before", 10)
        before.run()  # in this thread: 200 events acknowledged before any standby
        assert len(before.acknowledged) == 10
        # a settled report folds them into the store now; left in the intake, they would be folded
        # (and journaled) after the standby attached, which then needs no seed (a bulk load's
        # folds can wait that long)
        assert pageviews(primary) == 10 * BATCH

        alone = status(primary)
        assert alone["journaling"] is False and alone["journal_entries"] == 0, alone
        assert alone["last_sequence"] == 10 * BATCH
        metrics = httpx.get(f"{primary.url}/metrics", headers=primary.auth(), timeout=10).text
        assert "footfall_replication_journaling 0.0" in metrics
        assert "footfall_replication_journal_entries 0.0" in metrics

        during = Loader(primary, "during", 15)  # events keep arriving while the standby is seeded
        during.start()
        standby = start_standby(tmp_path / "standby", primary, key)
        during.join()
        after = Loader(primary, "after", 5)
        after.run()
        assert "Seeded from a copy of the primary's store" in standby.log()

        wait_until(lambda: caught_up(primary, standby), "the seeded standby to catch up")
        kept = status(primary)
        assert kept["journaling"] is True and kept["standby_attached_at"], kept
        assert kept["journal_covers_after"] >= 10 * BATCH  # started when the standby came
        assert kept["journal_entries"] == kept["last_sequence"] - kept["journal_covers_after"]
        assert status(standby)["cursor"] == kept["last_sequence"] == 30 * BATCH
        assert pageviews(standby) == pageviews(primary) == 30 * BATCH
        for loader in (before, during, after):
            for user, ids in list(loader.acknowledged.items())[::4]:
                assert stored_ids(standby, user) == set(ids) == stored_ids(primary, user), user
    finally:
        if standby is not None:
            standby.stop()
        primary.stop()
