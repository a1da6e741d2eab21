"""Filtered reports refused at their time budget finish in the background (appliance/query/flights.py).

The registry is tested with computations that hold until the test lets them go (each step
checks the budget, as a scan does between blocks), so every interleaving is the one named;
the appliance's own reports are tested under budgets they cannot meet.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import Future
from datetime import timedelta

import pytest

from appliance.budget import check_budget, time_budget
from appliance.errors import QueryTimeout
from appliance.filters import parse_filters
from appliance.models import Event, EventKind
from appliance.periods import local_today
from appliance.query.flights import Flights, waits_on
from appliance.query.spec import Query
from tests.appliance.test_columns import _events

WAIT = 30.0  # seconds: the most a test waits for a condition before it fails


class Held:
    """A computation that runs until released (checking its budget at every step, as a scan
    does between blocks); it records how it ended."""

    def __init__(self, answer: object = "answer") -> None:
        self.answer = answer
        self.release = threading.Event()
        self.running = threading.Event()
        self.calls = 0
        self.ended = threading.Event()
        self.stopped: BaseException | None = None

    def __call__(self) -> object:
        self.calls += 1
        self.running.set()
        try:
            while not self.release.wait(0.002):  # one "block" per wait
                check_budget()
            check_budget()
            return self.answer
        except QueryTimeout as stop:
            self.stopped = stop
            raise
        finally:
            self.ended.set()


def _refused(flights: Flights, key: tuple, compute, budget: float = 0.01) -> QueryTimeout:
    with time_budget(budget), pytest.raises(QueryTimeout) as refused:
        flights.run(key, compute)
    return refused.value


def test_a_refused_computation_finishes_in_the_background_and_the_retry_gets_it() -> None:
    flights = Flights(finish_seconds=WAIT)
    held = Held()
    refused = _refused(flights, ("report",), held)
    assert refused.computing and refused.retry_after == 1 and refused.status == 503
    assert "still being computed" in refused.message
    assert flights.finishers == 1
    retry = threading.Thread(target=lambda: results.append(_run(flights, ("report",), Held("other"), WAIT)))
    results: list[object] = []
    retry.start()  # waits for the running computation within its own budget
    held.release.set()
    retry.join(WAIT)
    assert results == ["answer"] and held.calls == 1
    assert flights.wait_idle(WAIT)
    assert (flights.started, flights.finished, flights.dropped, flights.finishers) == (1, 1, 0, 0)


def _run(flights: Flights, key: tuple, compute, budget: float):
    with time_budget(budget):
        return flights.run(key, compute)


def test_identical_requests_share_one_computation() -> None:
    flights = Flights()
    held = Held()
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(_run(flights, ("same",), held, WAIT)))
    first.start()
    assert held.running.wait(WAIT)
    second = threading.Thread(target=lambda: results.append(_run(flights, ("same",), Held("other"), WAIT)))
    second.start()
    deadline = time.monotonic() + WAIT
    while flights.waiting(("same",)) < 2:  # the second request joined the first one's flight
        assert time.monotonic() < deadline
        time.sleep(0.001)
    held.release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert results == ["answer", "answer"] and held.calls == 1 and flights.started == 1


def test_one_finisher_at_a_time_a_second_refused_computation_stops() -> None:
    flights = Flights(finish_seconds=WAIT, max_finishers=1)
    finishing, left = Held(), Held()
    assert _refused(flights, ("a",), finishing).computing
    second = _refused(flights, ("b",), left)
    assert not second.computing and "narrow the period" in second.message
    assert left.ended.wait(WAIT) and isinstance(left.stopped, QueryTimeout)  # stopped at its next check
    assert flights.dropped == 1 and flights.finishers == 1
    finishing.release.set()
    assert flights.wait_idle(WAIT) and flights.finished == 1 and flights.finishers == 0


def test_with_no_finishers_a_refused_computation_stops_as_before() -> None:
    flights = Flights(max_finishers=0)
    held = Held()
    refused = _refused(flights, ("off",), held)
    assert not refused.computing and refused.retry_after is None
    assert held.ended.wait(WAIT) and isinstance(held.stopped, QueryTimeout) and flights.dropped == 1


def test_a_refused_flight_that_waited_on_a_walk_still_says_computing() -> None:
    """No finisher is free, so the flight stops; but the day-set walk it waited on goes on
    into the kept answers, so the refusal asks for a retry (Retry-After) instead of saying
    "narrow the period"."""
    flights = Flights(max_finishers=0)
    walk, done = Future(), Future()
    done.set_result(None)

    def waiting_on(work: Future) -> Held:
        held = Held()
        inner = held.__call__

        def compute() -> object:
            waits_on(work)
            return inner()

        compute.held = held  # type: ignore[attr-defined]
        return compute

    walking = waiting_on(walk)
    refused = _refused(flights, ("walking",), walking)
    assert refused.computing and refused.retry_after == 1 and "still being computed" in refused.message
    assert walking.held.ended.wait(WAIT) and isinstance(walking.held.stopped, QueryTimeout)  # the flight stopped
    finished = _refused(flights, ("finished",), waiting_on(done))
    assert not finished.computing and finished.retry_after is None  # its walk is over: nothing goes on


def test_a_finisher_over_its_ceiling_is_dropped_and_frees_its_place() -> None:
    flights = Flights(finish_seconds=0.2)
    endless = Held()
    assert _refused(flights, ("slow",), endless).computing
    assert endless.ended.wait(WAIT) and isinstance(endless.stopped, QueryTimeout)
    assert flights.wait_idle(WAIT)
    assert (flights.finished, flights.dropped, flights.finishers) == (0, 1, 0)
    assert _refused(flights, ("next",), Held(), budget=0.001).computing  # the place is free again
    flights.close()


def test_an_error_reaches_every_waiter_and_nothing_waits_without_a_budget() -> None:
    flights = Flights()

    def broken() -> None:
        raise ValueError("broken report")

    with pytest.raises(ValueError, match="broken report"):
        _run(flights, ("broken",), broken, WAIT)
    assert flights.run(("inline",), lambda: threading.current_thread()) is threading.current_thread()


@pytest.fixture
def filled(appliance):
    site = appliance.sites.add("flights.test", timezone="Europe/Berlin")
    appliance.record_sync(_events(site, random.Random(5), 2000, time.time() - 5 * 86400, 5 * 86400 - 60))
    today = local_today(site.timezone)
    query = Query(site=site, date_from=today - timedelta(days=7), date_to=today, filters=parse_filters("page==/a"))
    return appliance, site, query


def test_a_refused_report_is_kept_for_the_retry_and_stays_exact(filled) -> None:
    appliance, site, query = filled
    memo = appliance.scans.memo
    with time_budget(1e-9), pytest.raises(QueryTimeout) as refused:
        time.sleep(0.001)
        appliance.stats.aggregate(query)
    assert refused.value.computing
    assert memo.flights.wait_idle(WAIT) and memo.flights.finished == 1
    computed = memo.computed
    with time_budget(1e-9):
        time.sleep(0.001)
        kept = appliance.stats.aggregate(query)  # the retry: from the kept answers, within no time at all
    assert memo.computed == computed
    assert kept == appliance.stats.scans.aggregate_of(appliance.stats.scans.select(query))  # a fresh scan
    # An event landing while a refused report finishes is in the next answer, never hidden by it.
    with time_budget(1e-9), pytest.raises(QueryTimeout):
        time.sleep(0.001)
        appliance.stats.breakdown(query, "page", 10)
    appliance.record_sync([Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=time.time() - 1,
                                 name="pageview", visitor_id=7, path="/a")])
    assert memo.flights.wait_idle(WAIT)
    assert appliance.stats.aggregate(query)["pageviews"] == kept["pageviews"] + 1
    rows = appliance.stats.breakdown(query, "page", 10)["results"]
    assert [row["pageviews"] for row in rows if row["value"] == "/a"] == [kept["pageviews"] + 1]


def test_two_concurrent_identical_reports_compute_once(filled) -> None:
    appliance, _site, query = filled
    memo = appliance.scans.memo
    computed, start = memo.computed, threading.Barrier(2)
    answers: list[object] = []

    def ask() -> None:
        start.wait()
        answers.append(_ask(appliance, query))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert len(answers) == 2 and answers[0] == answers[1]
    assert memo.computed - computed == 1  # shared, or kept by the time the second one asked


def _ask(appliance, query):
    with time_budget(WAIT):
        return appliance.stats.traffic_report(query)


def test_close_during_a_finisher_returns_promptly(filled) -> None:
    appliance, _site, _query = filled
    endless = Held()
    flights = appliance.scans.memo.flights
    assert _refused(flights, ("endless",), endless).computing
    assert endless.running.wait(WAIT)
    began = time.monotonic()
    appliance.close()
    assert time.monotonic() - began < 5
    assert endless.ended.is_set() and isinstance(endless.stopped, QueryTimeout)
