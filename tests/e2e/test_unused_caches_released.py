"""A real server lets go of its decoded column blocks and sketches once nobody used them for
``[memory] release_unused_seconds`` (here 1 s), and answers the same filtered query after."""

from __future__ import annotations

import time

import httpx

from tests.e2e.conftest import utc_days_since, utc_today
from tests.e2e.test_observability_ops import scrape
from tests.servers import BROWSER_UA


def _caches(handle) -> tuple[float, float]:
    found = scrape(handle)
    return found[("footfall_column_cache_bytes", ())], found[("footfall_sketch_cache_bytes", ())]


def test_caches_unused_for_the_setting_are_let_go(own_server):
    handle = own_server(env={"FOOTFALL_MEMORY_RELEASE_UNUSED_SECONDS": "1"})
    first_day = utc_today()
    with httpx.Client(base_url=handle.url, headers={"user-agent": BROWSER_UA}) as client:
        batch = [{"event_type": "page_view", "site": "localhost", "session_id": f"u{n}",
                  "metadata": {"page_url": f"http://localhost/unused/{n % 3}"}} for n in range(30)]
        assert client.post("/api/v1/events", json=batch).status_code == 200
        params = {"site": "localhost", **utc_days_since(first_day), "property": "page",
                  "filters": "page==/unused/*"}

        def breakdown() -> list:
            answer = client.get("/api/v1/stats/breakdown", params=params, headers=handle.auth())
            assert answer.status_code == 200, answer.text
            return answer.json()["data"]["results"]

        rows = breakdown()
        assert sum(row["pageviews"] for row in rows) == 30
        blocks, sketches = _caches(handle)
        assert blocks > 0 and sketches > 0  # the filtered query's blocks, the fold's sketches

        deadline = time.monotonic() + 30
        while _caches(handle) != (0, 0):
            assert time.monotonic() < deadline, f"still cached: {_caches(handle)}"
            time.sleep(0.2)

        assert breakdown() == rows
