"""Query time budgets: a deadline that follows the request into its worker thread."""

from __future__ import annotations

import asyncio
import time
from datetime import date

import anyio.to_thread
import pytest

from appliance.budget import check_budget, time_budget
from appliance.errors import QueryTimeout
from appliance.filters import make_filter
from appliance.models import Event, EventKind
from appliance.query.spec import Query


def test_no_budget_never_stops() -> None:
    check_budget()
    with time_budget(None):
        check_budget()
    with time_budget(0):
        check_budget()


def test_past_the_deadline_a_check_raises_and_names_the_budget() -> None:
    with time_budget(1e-9):
        time.sleep(0.001)
        with pytest.raises(QueryTimeout) as caught:
            check_budget()
    assert caught.value.status == 503
    assert caught.value.field == "query"
    check_budget()  # the budget ends with its block


def test_an_enclosing_budget_wins() -> None:
    with time_budget(1e-9), time_budget(3600):
        time.sleep(0.001)
        with pytest.raises(QueryTimeout):
            check_budget()


def test_the_deadline_follows_the_request_into_a_worker_thread() -> None:
    async def request() -> None:
        with time_budget(1e-9):
            await asyncio.sleep(0.001)
            await anyio.to_thread.run_sync(check_budget)

    with pytest.raises(QueryTimeout):
        asyncio.run(request())


def test_a_filtered_query_stops_at_its_budget(appliance) -> None:
    site = appliance.sites.add("budget.test")
    now = time.time()
    appliance.record_sync(
        [
            Event(kind=EventKind.PAGEVIEW, site_id=site.id, timestamp=now - index, name="pageview",
                  visitor_id=index, hostname="budget.test", path=f"/p{index}")
            for index in range(50)
        ]
    )
    query = Query(site=site, date_from=date.fromtimestamp(now - 86400), date_to=date.fromtimestamp(now + 86400),
                  filters=[make_filter("matches", "page", ["/*9"])])
    assert appliance.stats.aggregate(query)["pageviews"] == 5
    with time_budget(1e-9):
        time.sleep(0.001)
        assert appliance.stats.aggregate(query)["pageviews"] == 5  # a kept answer: no scan to stop
    appliance.stats.scans.memo.clear()
    with time_budget(1e-9), pytest.raises(QueryTimeout):
        time.sleep(0.001)
        appliance.stats.aggregate(query)
