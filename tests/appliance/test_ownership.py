"""One writer per data dir: the lock, the full open that takes it, the records-only session
that does not, and the site generation a server watches for other processes' writes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

from appliance.config import load_settings
from appliance.models import Event, EventKind
from appliance.periods import day_bucket, day_from_number
from appliance.query.spec import Query
from appliance.runtime.appliance import Appliance
from appliance.runtime.ownership import SERVER_ROLE, DataDirBusy, WriterLock, lock_path, read_owner
from appliance.sites import SiteError, SiteRegistry
from tests.servers import ROOT


def _settings(tmp_path, **environ):
    return load_settings(environ=environ, data_dir=str(tmp_path / "data"))


# -- the lock ---------------------------------------------------------------------------------
def test_the_lock_is_exclusive_and_names_its_owner(tmp_path):
    first = WriterLock(tmp_path, "footfall demo").acquire()
    assert first.held
    assert read_owner(tmp_path) == (os.getpid(), "footfall demo")
    with pytest.raises(DataDirBusy) as refused:
        WriterLock(tmp_path, "other").acquire()
    error = refused.value
    assert (error.pid, error.role, error.data_dir) == (os.getpid(), "footfall demo", tmp_path.resolve())
    assert f"in use by 'footfall demo' (pid {os.getpid()})" in str(error)
    first.release()
    assert not first.held
    assert read_owner(tmp_path) == (None, "")  # no stale pid left for messages
    second = WriterLock(tmp_path, "other").acquire()
    assert read_owner(tmp_path) == (os.getpid(), "other")
    second.release()
    first.release()  # releasing twice is harmless


def test_a_server_owner_is_named_as_a_server(tmp_path):
    with WriterLock(tmp_path, SERVER_ROLE), pytest.raises(DataDirBusy) as refused:
        WriterLock(tmp_path).acquire()
    message = str(refused.value)
    assert message.startswith(f"a server is running on this data dir ({tmp_path.resolve()}, pid {os.getpid()})")
    assert message.endswith("use the dashboard/API, or stop it")


def test_acquire_waits_for_a_closing_owner(tmp_path):
    """A respawned server worker waits while the previous one still closes."""
    owner = WriterLock(tmp_path, SERVER_ROLE).acquire()
    threading.Timer(0.3, owner.release).start()
    started = time.monotonic()
    waiter = WriterLock(tmp_path, SERVER_ROLE).acquire(wait=10)
    assert 0.2 <= time.monotonic() - started < 5
    assert waiter.held
    waiter.release()


def test_acquire_gives_up_after_its_wait(tmp_path):
    with WriterLock(tmp_path, SERVER_ROLE):
        started = time.monotonic()
        with pytest.raises(DataDirBusy):
            WriterLock(tmp_path).acquire(wait=0.3)
        assert time.monotonic() - started >= 0.3


def test_the_kernel_releases_the_lock_of_a_dead_process(tmp_path):
    """A killed owner leaves its pid in the file, but never a lock."""
    code = (
        "import os, sys, time; from appliance.runtime.ownership import WriterLock; "
        "WriterLock(sys.argv[1], 'server').acquire(); print('held', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(DataDirBusy) as refused:
            WriterLock(tmp_path).acquire()
        assert refused.value.pid == child.pid
    finally:
        child.kill()
        child.wait(timeout=10)
    assert read_owner(tmp_path)[0] == child.pid  # stale content...
    WriterLock(tmp_path).acquire().release()  # ...but no lock


# -- full opens -------------------------------------------------------------------------------
def test_a_second_full_open_of_a_data_dir_fails_clearly(tmp_path):
    settings = _settings(tmp_path)
    with Appliance(settings).open(role=SERVER_ROLE):
        with pytest.raises(DataDirBusy) as refused:
            Appliance(settings).open()
        assert "a server is running on this data dir" in str(refused.value)
        assert str(lock_path(settings.data_dir).parent.resolve()) in str(refused.value)
        assert f"pid {os.getpid()}" in str(refused.value)
    with Appliance(settings):  # closed: the lock went with it
        pass


def test_a_failed_open_releases_the_lock(tmp_path, monkeypatch):
    settings = _settings(tmp_path)

    def broken(self):
        raise RuntimeError("plugins failed to load")

    monkeypatch.setattr(Appliance, "_open_owned", broken)
    with pytest.raises(RuntimeError):
        Appliance(settings).open()
    monkeypatch.undo()
    with Appliance(settings):
        pass


# -- records-only sessions --------------------------------------------------------------------
def _views(site, count: int) -> list[Event]:
    now = time.time()
    return [Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now, name="pageview", visitor_id=i + 1,
                  path="/") for i in range(count)]


@pytest.mark.parametrize("intake", ["true", "false"])
def test_a_records_session_beside_the_owner_leaves_its_pending_events_alone(tmp_path, intake):
    """In another process, as ``footfall user create`` runs beside a server that has
    committed but not yet aggregated events (staged in the intake, or in the store's
    ``pending``): they are counted once, by the owner."""
    settings = _settings(tmp_path, FOOTFALL_INGEST_AGGREGATE_INTERVAL_MS="3600000",
                         FOOTFALL_INGEST_AGGREGATE_MAX_EVENTS="1000000", FOOTFALL_INGEST_INTAKE=intake)
    waiting = 0 if intake == "true" else 20  # in `pending`
    with Appliance(settings).open(role=SERVER_ROLE) as owner:
        site = owner.sites.add("pending.test")
        owner.writer.write_sync(_views(site, 20))
        assert owner.store.entries(b"pending") == waiting and owner.recorder.waiting == 20
        counters = owner.store.entries(b"counters")
        code = (
            "import sys; from appliance.config import load_settings; "
            "from appliance.runtime.records import RecordsSession\n"
            "with RecordsSession(load_settings(environ={}, data_dir=sys.argv[1])) as s:\n"
            "    site = s.sites.add('other.test')\n"
            "    s.accounts.create('visitor', 'a-long-enough-password', 'viewer', sites=[site.id])\n"
            "    s.audit.record('cli', 'site.create', site.domain)\n"
            "    print(len(s.plugin_manager.list_name_plugin()))\n"
        )
        result = subprocess.run([sys.executable, "-c", code, settings.data_dir], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert int(result.stdout) >= 1
        assert owner.store.entries(b"pending") == waiting  # nothing replayed, nothing aggregated
        assert owner.store.entries(b"counters") == counters
        other = owner.sites.get("other.test")
        assert other is not None  # a miss reloads the sites: no restart needed
        assert owner.accounts.verify_password("visitor", "a-long-enough-password").sites == [other.id]
        assert owner.audit.latest(1)[0].target == "other.test"
        # the views were stamped in this test: from yesterday (UTC) on, they are counted on
        # either side of a midnight it crosses
        today = day_from_number(day_bucket(time.time()))
        since = {"date_from": today - timedelta(days=1), "date_to": today}
        assert owner.stats.aggregate(Query(site=site, **since))["pageviews"] == 20
    with Appliance(settings) as reopened:
        site = reopened.sites.get("pending.test")
        assert reopened.stats.aggregate(Query(site=site, **since))["pageviews"] == 20


# -- the site generation ----------------------------------------------------------------------
def test_a_registry_notices_another_writers_sites(tmp_path, monkeypatch):
    from storage import Store
    from storage.records import Records

    store = Store(tmp_path / "store", initial_map_bytes=1 << 20)
    try:
        records = Records(store)
        server, cli = SiteRegistry(store, records, "UTC", 30), SiteRegistry(store, records, "UTC", 30)
        server.get("warm.test")
        cli.add("new.test")
        assert server.get("new.test").domain == "new.test"  # a miss checks the generation at once
        assert server.by_id(server.get("new.test").id) is not None

        # a change to a known site is seen within RECHECK_SECONDS, without a miss
        reads = []
        real = records.generation
        monkeypatch.setattr(records, "generation", lambda *a, **k: reads.append(1) or real(*a, **k))
        for _ in range(1000):
            server.get("new.test")
        assert len(reads) <= 1  # no LMDB transaction per lookup
        cli.change("new.test", timezone="Europe/Paris")
        server._next_check = 0.0  # as if a second had passed
        assert server.get("new.test").timezone == "Europe/Paris"

        # a duplicate made by another process at the same moment (before this registry
        # looked) is refused inside the write transaction, not overwritten
        cli.add("dup.test")
        with monkeypatch.context() as patched:
            patched.setattr(server, "reload_if_changed", lambda: False)
            with pytest.raises(SiteError, match="already exists"):
                server.add("dup.test")
        assert server.get("dup.test").id == cli.get("dup.test").id

        # the server's own writes do not make it reload
        server.add("own.test")
        assert server.reload_if_changed() is False
    finally:
        store.close()
