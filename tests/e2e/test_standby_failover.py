"""A standby that takes over, with real servers on 127.0.0.1: follow, refuse writes, resume, fail over.

Two primary/standby pairs: one asynchronous, one synchronous (``replication.sync``). A loader
thread sends batches of server-side events (one ``user_id`` per batch) and keeps the event ids
the primary acknowledged; an event id carries the global sequence (its last 8 hex digits), the
same on both machines. The standby is killed never; the primary is killed with SIGKILL in the
middle of the load, the standby promoted (``footfall promote``), and then:

- asynchronous: every acknowledged event up to the standby's cursor is on the promoted standby
  (the recovery point is what it had not pulled yet);
- synchronous: every acknowledged event is on it (recovery point zero).

Also: a standby refuses every write (ingest, API, dashboard) naming its primary; a restarted
standby resumes from its cursor with nothing doubled or missed; the lag under load and the
synchronous mode's latency cost are measured and printed (``-s`` shows them).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.appliance.test_plausible_import import fixture_sum, make_zip
from tests.e2e.conftest import utc_today
from tests.servers import FOOTFALL, ROOT, ServerHandle, footfall_cli, free_port, start_server

SITE = "ha.test"
BATCH = 20
MEASURED: dict[str, float] = {}


def wait_until(probe, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}")


def start_standby(data_dir: Path, primary: ServerHandle, key: str, port: int | None = None,
                  log_dir: Path | None = None) -> ServerHandle:
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = (log_dir or data_dir.parent) / f"standby-{data_dir.name}-{port}.log"
    env = {**os.environ, "FOOTFALL_REPLICATION_POLL_WAIT_SECONDS": "5"}
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [*FOOTFALL, "serve", "--data", str(data_dir), "--port", str(port), "--follow", primary.url, "--token", key],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    handle = ServerHandle(data_dir=data_dir, port=port, process=process, log_path=log_path, env=env, token=key)

    def ready():
        if process.poll() is not None:
            raise RuntimeError(f"standby exited:\n{handle.log()}")
        try:  # 200 once the primary's users (and this key) were copied
            return httpx.get(f"{handle.url}/api/v1/replication/status", headers=handle.auth(), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, "the standby to copy its primary's records")
    return handle


def status(handle: ServerHandle) -> dict:
    answer = httpx.get(f"{handle.url}/api/v1/replication/status", headers=handle.auth(), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def caught_up(primary: ServerHandle, standby: ServerHandle) -> bool:
    return status(standby)["cursor"] >= status(primary)["last_sequence"]


def make_pair(root: Path, sync: bool):
    env = {"FOOTFALL_REPLICATION_SYNC": "true", "FOOTFALL_REPLICATION_SYNC_TIMEOUT_MS": "5000"} if sync else {}
    primary = start_server(root / "primary", env=env)
    with primary.client(headers=primary.auth()) as client:
        assert client.post("/api/v1/sites", json={"domain": SITE}).status_code == 201
        key = client.post("/api/v1/apikeys", json={"name": "standby"}).json()["key"]
    primary.token = key  # an admin API key: for the standby's pulls and for every call below
    standby = start_standby(root / "standby", primary, key)
    return primary, standby


class Loader(threading.Thread):
    """Sends batches (one user id each) until stopped or the primary is gone; keeps the
    acknowledged event ids by user."""

    def __init__(self, primary: ServerHandle, prefix: str, batches: int) -> None:
        super().__init__(daemon=True)
        self.primary, self.prefix, self.batches = primary, prefix, batches
        self.acknowledged: dict[str, list[str]] = {}
        self.stop = threading.Event()
        self.latencies: list[float] = []

    def run(self) -> None:
        with self.primary.client(headers=self.primary.auth()) as client:
            for number in range(self.batches):
                if self.stop.is_set():
                    return
                user = f"{self.prefix}-{number}"
                body = [
                    {"event_type": "page_view", "user_id": user, "site": SITE,
                     "metadata": {"page_url": f"https://{SITE}/p{number}/{index}", "user_agent": "Mozilla/5.0 Firefox/125.0"}}
                    for index in range(BATCH)
                ]
                started = time.perf_counter()
                try:
                    answer = client.post("/api/v1/events", json=body)
                except httpx.HTTPError:
                    return  # the primary was killed
                if answer.status_code != 200:
                    return
                self.latencies.append(time.perf_counter() - started)
                self.acknowledged[user] = [item["event_id"] for item in answer.json()["results"]]


def sequence_of(event_id: str) -> int:
    return int(event_id[-8:], 16)


def stored_ids(handle: ServerHandle, user: str) -> set[str]:
    answer = httpx.get(f"{handle.url}/api/v1/sites/{SITE}/people/{user}", headers=handle.auth(), timeout=30)
    assert answer.status_code == 200, answer.text
    return {event["event_id"] for event in answer.json()["data"]["events"]}


def pageviews(handle: ServerHandle) -> int:
    """The page views the site was sent, all in the last minutes: from yesterday (UTC) on, so
    they are counted on either side of a midnight the run crosses."""
    today = utc_today()
    since = {"start_date": (today - timedelta(days=1)).isoformat(), "end_date": today.isoformat()}
    answer = httpx.get(f"{handle.url}/api/v1/stats/aggregate", headers=handle.auth(), params={"site": SITE, **since}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return (body.get("data") or body)["pageviews"]


@pytest.fixture(scope="module")
def async_pair(tmp_path_factory):
    primary, standby = make_pair(tmp_path_factory.mktemp("async"), sync=False)
    yield primary, standby
    standby.stop()
    primary.kill()


@pytest.fixture(scope="module")
def sync_pair(tmp_path_factory):
    primary, standby = make_pair(tmp_path_factory.mktemp("sync"), sync=True)
    yield primary, standby
    standby.stop()
    primary.kill()


def test_standby_follows_under_load_and_never_accepts_writes(async_pair):
    primary, standby = async_pair
    with primary.client(headers=primary.auth()) as client:  # a goal, copied and counted on the standby too
        goal = {"name": "Second page", "kind": "page", "page": "/p1/*"}
        assert client.post("/api/v1/goals", params={"site": SITE}, json=goal).status_code == 201
    loader = Loader(primary, "load", 60)
    lags = []
    loader.start()
    while loader.is_alive():  # the lag as the primary sees it: committed, not yet confirmed
        current = status(primary)
        lags.append((current["standby_lag_events"] or 0, current["standby_lag_seconds"]))
    loader.join()
    wait_until(lambda: caught_up(primary, standby), "the standby to catch up")
    MEASURED["lag_events_max"] = max(lag for lag, _ in lags)
    MEASURED["lag_seconds_max"] = max(seconds for _, seconds in lags)
    MEASURED["events_per_second"] = 60 * BATCH / sum(loader.latencies)
    print(f"\nstandby lag under load ({MEASURED['events_per_second']:.0f} events/s in batches of {BATCH}): "
          f"max {MEASURED['lag_events_max']} events, {MEASURED['lag_seconds_max']:.3f} s over {len(lags)} samples")
    assert pageviews(standby) == pageviews(primary) == 60 * BATCH
    for user, ids in list(loader.acknowledged.items())[::7]:
        assert stored_ids(standby, user) == set(ids)  # the same event ids on both
    # the same figures, of the same 30 days (their last named: not a day apart across a midnight)
    same_days = {"site": SITE, "end_date": utc_today().isoformat()}
    for report in ("/api/v1/reports/traffic", "/api/v1/reports/conversions"):
        answers = [httpx.get(f"{h.url}{report}", headers=h.auth(), params=same_days, timeout=30).json() for h in (primary, standby)]
        assert answers[0] == answers[1], report
    conversions = answers[1]["data"]
    assert any(row["name"] == "Second page" and row["conversions"] == BATCH for row in conversions["goals"]), conversions

    # a person erased on the primary is erased on the standby too, and the figures follow
    with primary.client(headers=primary.auth()) as client:
        assert client.delete(f"/api/v1/sites/{SITE}/people/load-5").json()["data"]["events"] == BATCH
    wait_until(lambda: not stored_ids(standby, "load-5"), "the standby to carry out the erasure")
    assert pageviews(standby) == pageviews(primary) == 59 * BATCH

    # every write is refused, naming the primary; reads work
    with standby.client(headers=standby.auth()) as client:
        for method, path, body in (
            ("POST", "/api/v1/events", {"event_type": "x", "site": SITE}),
            ("POST", "/api/v1/collect", None),
            ("POST", "/api/event", {"name": "pageview", "url": f"https://{SITE}/", "domain": SITE}),
            ("POST", "/api/send", {"type": "event", "payload": {"website": SITE, "url": "/"}}),
            ("POST", "/api/v1/sites", {"domain": "new.test"}),
            ("DELETE", f"/api/v1/sites/{SITE}/people/load-0", None),
            ("POST", f"/sites/{SITE}/settings", None),
        ):
            answer = client.request(method, path, json=body)
            assert answer.status_code == 503, (method, path, answer.status_code)
            assert primary.url in answer.json()["error"]["message"], (method, path)
        assert client.get(f"/api/v1/sites/{SITE}").status_code == 200
    assert status(standby)["role"] == "standby"
    # the primary's users sign in on the standby; every page says it is a read-only standby
    with httpx.Client(base_url=standby.url, timeout=30) as browser:
        form_csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text).group(1)
        login = browser.post("/login", data={"username": "admin", "password": primary.password, "csrf": form_csrf})
        assert login.status_code == 303, login.text[:300]
        page = browser.get("/sites")
        assert page.status_code == 200 and f"Read-only standby of {primary.url}" in page.text
    health = httpx.get(f"{standby.url}/api/v1/health").json()
    assert health["replication"]["role"] == "standby" and health["replication"]["lag_events"] == 0
    metrics = httpx.get(f"{standby.url}/metrics", headers=standby.auth(), timeout=30).text
    assert "footfall_standby_lag_events 0.0" in metrics, metrics[-2000:]


def test_restarted_standby_resumes_from_its_cursor(async_pair):
    primary, standby = async_pair
    standby.stop()
    loader = Loader(primary, "while-down", 10)
    loader.run()
    restarted = start_standby(standby.data_dir, primary, standby.token, port=standby.port)
    standby.process = restarted.process
    wait_until(lambda: caught_up(primary, restarted), "the restarted standby to catch up")
    assert pageviews(restarted) == pageviews(primary) == 69 * BATCH  # nothing doubled, nothing missed
    assert stored_ids(restarted, "while-down-3") == set(loader.acknowledged["while-down-3"])


def test_imported_aggregates_reach_the_standby(async_pair, tmp_path):
    """A Plausible CSV import writes daily aggregates, not events: the standby copies a site's
    rows when it sees the import's record, and answers the same figures for the imported days."""
    primary, standby = async_pair
    export = make_zip(tmp_path / "plausible.zip")
    with httpx.Client(base_url=primary.url, timeout=30) as browser:
        form_csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text).group(1)
        login = browser.post("/login", data={"username": "admin", "password": primary.password, "csrf": form_csrf})
        assert login.status_code == 303, login.text[:300]
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', browser.get(f"/sites/{SITE}/transfers").text).group(1)
        uploaded = browser.post(f"/sites/{SITE}/imports", data={"csrf": csrf, "kind": "plausible"},
                                files={"file": (export.name, export.read_bytes(), "application/zip")})
        assert uploaded.status_code == 303, uploaded.text[:300]

    def imported_totals(handle):
        answer = httpx.get(f"{handle.url}/api/v1/stats/aggregate", headers=handle.auth(), timeout=30,
                           params={"site": SITE, "start_date": "2025-03-01", "end_date": "2025-03-03"})
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]

    expected = fixture_sum("visitors", "visitors")
    wait_until(lambda: imported_totals(primary)["visitors"] == expected, "the primary's import job")
    wait_until(lambda: imported_totals(standby) == imported_totals(primary), "the standby to copy the imported days")


def test_sync_mode_latency_cost(async_pair, sync_pair):
    timings = {}
    for name, (primary, _) in (("async", async_pair), ("sync", sync_pair)):
        with primary.client(headers=primary.auth()) as client:
            for _ in range(5):  # warm up
                client.post("/api/v1/events", json={"event_type": "warm", "site": SITE, "metadata": {"page_url": f"https://{SITE}/w"}})
            started = time.perf_counter()
            for index in range(100):
                answer = client.post(
                    "/api/v1/events",
                    json={"event_type": "page_view", "site": SITE, "user_id": f"timing-{name}",
                          "metadata": {"page_url": f"https://{SITE}/t/{index}", "user_agent": "Mozilla/5.0 Firefox/125.0"}},
                )
                assert answer.status_code == 200
            timings[name] = (time.perf_counter() - started) / 100
    sync_status = status(sync_pair[0])
    assert sync_status["sync"] and sync_status["sync_timeouts"] == 0
    assert sync_status["standby_confirmed"] == sync_status["last_sequence"]  # acknowledged = on the standby
    MEASURED["async_ms"], MEASURED["sync_ms"] = timings["async"] * 1000, timings["sync"] * 1000
    print(f"\none event, sequential, loopback: async {MEASURED['async_ms']:.2f} ms, sync {MEASURED['sync_ms']:.2f} ms, "
          f"ratio {timings['sync'] / timings['async']:.2f}")


def _fail_over(primary: ServerHandle, standby: ServerHandle, prefix: str) -> tuple[Loader, dict]:
    loader = Loader(primary, prefix, 400)
    loader.start()
    wait_until(lambda: len(loader.acknowledged) >= 15, "the load to get going")
    primary.kill()  # SIGKILL, in the middle of the load
    loader.stop.set()
    loader.join()
    promoted = footfall_cli("promote", "--url", standby.url, "--token", standby.token, data_dir=standby.data_dir)
    assert promoted.returncode == 0, promoted.stderr
    after = status(standby)
    assert after["role"] == "primary (promoted)"
    return loader, after


def test_async_failover_keeps_what_the_standby_confirmed(async_pair):
    primary, standby = async_pair
    loader, after = _fail_over(primary, standby, "async-kill")
    cursor = after["cursor"]
    promised = {event_id for ids in loader.acknowledged.values() for event_id in ids if sequence_of(event_id) <= cursor}
    assert promised
    present = set()
    for user in loader.acknowledged:
        present |= stored_ids(standby, user)
    assert promised <= present
    # the promoted standby takes writes now
    with standby.client(headers=standby.auth()) as client:
        answer = client.post("/api/v1/events", json={"event_type": "after", "site": SITE, "metadata": {"page_url": f"https://{SITE}/x"}})
        assert answer.status_code == 200


def test_sync_failover_keeps_every_acknowledged_event(sync_pair):
    primary, standby = sync_pair
    loader, _ = _fail_over(primary, standby, "sync-kill")
    lost = []
    for user, ids in loader.acknowledged.items():
        missing = set(ids) - stored_ids(standby, user)
        lost += sorted(missing)
    assert not lost, f"{len(lost)} acknowledged events missing on the promoted standby"
    # restarted with --follow still in its command line, a promoted data dir refuses to follow
    standby.stop()
    again = footfall_cli("serve", "--port", str(free_port()), "--follow", primary.url, "--token", standby.token,
                         data_dir=standby.data_dir)
    assert again.returncode == 2 and "promoted" in again.stderr
    assert standby.data_dir.is_dir()
    # no raw identifiers on the standby's disk either
    data = b"".join(path.read_bytes() for path in standby.data_dir.rglob("*") if path.is_file())
    assert b"sync-kill-1" not in data and b"Firefox/125.0" not in data
