"""Group commit: concurrent submitters, bounded batches, errors delivered to every waiter, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter

import pytest

from appliance.ingest.writer import Writer
from appliance.models import Event, EventKind

LONG_INTERVAL_MS = 60_000  # batches close only when full or on stop()


class FakeStorage:
    """A commit function that records batches; the key of item ``x`` is ``b"key-x"``."""

    def __init__(self, fail_batches: set[int] = frozenset(), delay: float = 0.0) -> None:
        self.batches: list[list] = []
        self.after_commit: list[list] = []
        self.fail_batches = fail_batches
        self.delay = delay
        self.lock = threading.Lock()

    def commit(self, events: list) -> list[bytes]:
        with self.lock:
            number = len(self.batches)
            self.batches.append(list(events))
        if self.delay:
            time.sleep(self.delay)
        if number in self.fail_batches:
            raise OSError(f"disk on fire in batch {number}")
        return [b"key-%s" % str(item).encode() for item in events]

    def committed_items(self) -> list:
        return [
            item
            for number, batch in enumerate(self.batches)
            if number not in self.fail_batches
            for item in batch
        ]


@pytest.fixture
def writers():
    started: list[Writer] = []

    def make(storage: FakeStorage, *, interval_ms: int = 5, max_events: int = 100) -> Writer:
        writer = Writer(
            storage.commit,
            lambda events, keys: storage.after_commit.append(list(events)),
            interval_ms=interval_ms,
            max_events=max_events,
        )
        writer.start()
        started.append(writer)
        return writer

    yield make
    for writer in started:
        writer.stop()  # stopping twice is harmless


def run_threads(count: int, target) -> None:
    threads = [threading.Thread(target=target, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)


def test_every_event_of_many_threads_is_committed_exactly_once(writers):
    storage = FakeStorage()
    writer = writers(storage, interval_ms=2, max_events=25)
    answers: dict[str, list[bytes]] = {}

    def submit(thread: int) -> None:
        for number in range(150):
            item = f"{thread}-{number}"
            answers[item] = writer.write_sync([item])

    run_threads(12, submit)

    committed = Counter(storage.committed_items())
    assert len(committed) == 12 * 150
    assert set(committed.values()) == {1}
    # Each waiter gets the key of its own event back, whatever else shared its batch.
    assert all(keys == [b"key-" + item.encode()] for item, keys in answers.items())
    assert writer.events_committed == 12 * 150
    assert writer.batches_committed == len(storage.batches)
    assert sum(len(batch) for batch in storage.after_commit) == 12 * 150


@pytest.mark.parametrize("events_per_submit", [1, 3])
def test_batches_never_exceed_commit_max_events(writers, events_per_submit):
    storage = FakeStorage(delay=0.001)  # a slow disk lets submitters pile up while it commits
    writer = writers(storage, interval_ms=50, max_events=10)

    def submit(thread: int) -> None:
        for number in range(40):
            writer.write_sync([(thread, number, part) for part in range(events_per_submit)])

    run_threads(16, submit)

    sizes = [len(batch) for batch in storage.batches]
    assert sum(sizes) == 16 * 40 * events_per_submit
    assert max(sizes) <= 10, sizes
    assert max(sizes) > 1, sizes  # concurrent submitters did share batches
    # A submission is never split across batches.
    for batch in storage.batches:
        assert Counter((thread, number) for thread, number, _ in batch) == Counter(
            {(thread, number): events_per_submit for thread, number, _ in batch}
        )


def test_events_arriving_during_a_slow_commit_are_cut_into_batches_at_the_limit(writers):
    storage = FakeStorage()
    committing, gate = threading.Event(), threading.Event()
    real_commit = storage.commit

    def slow_first_commit(events):
        if not storage.batches:
            committing.set()
            gate.wait(10)
        return real_commit(events)

    storage.commit = slow_first_commit
    writer = writers(storage, interval_ms=LONG_INTERVAL_MS, max_events=4)
    first, _ = writer.submit(["a0", "a1", "a2", "a3"])  # full: the writer takes it and stalls
    assert committing.wait(5)
    pending = [writer.submit([f"b{number}"]) for number in range(10)]
    pending.append(writer.submit(["c0", "c1", "c2"]))

    gate.set()
    writer.stop()

    first.wait(1)
    for batch, _ in pending:
        batch.wait(1)
    assert [len(batch) for batch in storage.batches] == [4, 4, 4, 2, 3]
    assert storage.committed_items() == [
        "a0",
        "a1",
        "a2",
        "a3",
        *[f"b{n}" for n in range(10)],
        "c0",
        "c1",
        "c2",
    ]


def test_a_full_batch_is_committed_without_waiting_for_the_interval(writers):
    storage = FakeStorage()
    writer = writers(storage, interval_ms=LONG_INTERVAL_MS, max_events=5)

    started = time.monotonic()
    keys = writer.write_sync(["a", "b", "c", "d", "e"], timeout=10)

    assert time.monotonic() - started < 5
    assert keys == [b"key-a", b"key-b", b"key-c", b"key-d", b"key-e"]


def test_a_commit_error_reaches_every_waiter_of_the_batch_and_the_next_batch_commits(writers):
    storage = FakeStorage(fail_batches={0})
    size = 6
    writer = writers(storage, interval_ms=LONG_INTERVAL_MS, max_events=size)
    outcomes: dict[int, object] = {}

    def submit(thread: int) -> None:
        try:
            outcomes[thread] = writer.write_sync([f"doomed-{thread}"], timeout=20)
        except BaseException as error:  # noqa: BLE001 - the test inspects what each waiter got
            outcomes[thread] = error

    run_threads(size, submit)

    assert len(storage.batches) == 1 and len(storage.batches[0]) == size
    errors = list(outcomes.values())
    assert all(isinstance(error, OSError) for error in errors), outcomes
    assert all(error is errors[0] for error in errors)  # the one failure, delivered to all
    assert writer.last_error == "OSError: disk on fire in batch 0"
    assert storage.after_commit == []  # nothing failed reaches the after-commit hooks

    assert writer.write_sync(["survivor"] * size, timeout=20) == [b"key-survivor"] * size
    assert writer.last_error is None
    assert writer.batches_committed == 1
    assert storage.after_commit == [["survivor"] * size]


def test_async_write_through_asyncio_run(writers):
    storage = FakeStorage()
    writer = writers(storage, interval_ms=5, max_events=100)

    async def main():
        single = await writer.write(["solo"])
        together = await asyncio.gather(*(writer.write([f"a{n}", f"b{n}"]) for n in range(20)))
        return single, together

    single, together = asyncio.run(main())

    assert single == [b"key-solo"]
    assert together == [[b"key-a%d" % n, b"key-b%d" % n] for n in range(20)]
    assert len(storage.batches) < 21  # the gathered writes shared batches


def test_async_write_raises_the_commit_error(writers):
    storage = FakeStorage(fail_batches={0})
    writer = writers(storage, interval_ms=5)

    async def main():
        return await asyncio.gather(
            writer.write(["x"]), writer.write(["y"]), return_exceptions=True
        )

    results = asyncio.run(main())

    assert [type(result) for result in results] == [OSError, OSError]
    assert asyncio.run(writer.write(["z"])) == [b"key-z"]


def test_stop_commits_the_pending_batch_and_refuses_new_events(writers):
    storage = FakeStorage()
    writer = writers(storage, interval_ms=LONG_INTERVAL_MS, max_events=1000)
    batch, start = writer.submit(["pending-1", "pending-2"])
    time.sleep(0.05)
    assert storage.batches == []  # waiting for the interval

    writer.stop()

    batch.wait(timeout=1)
    assert storage.batches == [["pending-1", "pending-2"]]
    assert batch.keys[start:] == [b"key-pending-1", b"key-pending-2"]
    with pytest.raises(RuntimeError, match="shutting down"):
        writer.submit(["too late"])


def test_events_from_many_threads_are_stored_exactly_once(make_appliance):
    appliance = make_appliance(ingest_commit_max_events="20", ingest_commit_interval_ms="2")
    site = appliance.sites.add("writer.example")
    base = 1_772_380_800.0

    def submit(thread: int) -> None:
        for number in range(25):
            visitor = thread * 1000 + number + 1
            appliance.record_sync(
                [
                    Event(
                        kind=EventKind.PAGEVIEW,
                        site_id=site.id,
                        timestamp=base + number,
                        name="pageview",
                        visitor_id=visitor,
                    )
                ]
            )

    run_threads(8, submit)

    stored = Counter(
        event.visitor_id for event in appliance.read_events(site, base - 1, base + 3600)
    )
    assert len(stored) == 8 * 25
    assert set(stored.values()) == {1}
    assert appliance.health()["events_accepted"] == 8 * 25
