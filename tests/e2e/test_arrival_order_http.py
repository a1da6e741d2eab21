"""The same events give the same visits, whatever order they arrive in — through the HTTP API.

Scripted visitors (each a distinct client address and user agent: a few dozen of them, one
to three visits each, gaps either side of the 30-minute timeout, a different referrer on
each visit's first event and sometimes another on a later page view) are posted to one site
in time order and to another shuffled, with reads in between (each read aggregates what was
sent so far, so the shuffled events really reach the counters out of order, as imports,
server-side queues, offline apps and retries deliver them). The unfiltered reports of both
sites must be identical: for today, with the visits still open, and for a closed day (two
days ago).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.servers import start_server

AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.{n}"
REFERRERS = ["", "https://www.google.com/", "https://www.facebook.com/", "https://news.example.org/story"]
PAGES = ["/", "/pricing", "/blog/a", "/docs", "/signup"]


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    handle = start_server(
        tmp_path_factory.mktemp("order") / "data", env={"FOOTFALL_SERVER_TRUSTED_PROXIES": "127.0.0.1"}
    )
    yield handle
    handle.kill()


def _site(server) -> str:
    domain = f"order-{uuid.uuid4().hex[:8]}.test"
    response = httpx.post(f"{server.url}/api/v1/sites", json={"domain": domain}, headers=server.auth())
    assert response.status_code == 201, response.text
    return domain


def script(start: datetime, visitors: int = 30, seed: int = 12) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for visitor in range(visitors):
        moment = start + timedelta(minutes=rng.randrange(60))
        for _ in range(rng.randint(1, 3)):
            referrer = rng.choice(REFERRERS)
            for index in range(rng.randint(1, 4)):
                if index and rng.random() < 0.3:
                    referrer = rng.choice(REFERRERS)  # a later page view's referrer: not the visit's
                kind = "Signup" if index and rng.random() < 0.15 else "page_view"
                events.append({"visitor": visitor, "at": moment, "kind": kind, "path": rng.choice(PAGES), "referrer": referrer})
                moment += timedelta(minutes=rng.choice([1, 7, 20, 29]), seconds=rng.randrange(60))
            moment += timedelta(minutes=rng.choice([31, 35, 60, 90]))
    return events


def _post(server, site, spec) -> None:
    body = {
        "event_type": spec["kind"],
        "site": site,
        "timestamp": spec["at"].isoformat(),
        "metadata": {"page_url": f"https://{site}{spec['path']}", "referrer_url": spec["referrer"]},
    }
    headers = {"user-agent": AGENT.format(n=spec["visitor"]), "x-forwarded-for": f"198.51.100.{spec['visitor'] + 1}"}
    response = httpx.post(f"{server.url}/api/v1/events", json=body, headers=headers)
    assert response.status_code == 200, response.text


def _get(server, path, site, first, last, **params):
    response = httpx.get(
        f"{server.url}{path}",
        params={"site": site, "start_date": first.isoformat(), "end_date": last.isoformat(), **params},
        headers=server.auth(),
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _reports(server, site, first, last):
    totals = _get(server, "/api/v1/stats/aggregate", site, first, last)
    return {
        "aggregate": {k: totals[k] for k in ("visitors", "visits", "bounce_rate", "visit_duration", "pageviews")},
        "source": _get(server, "/api/v1/stats/breakdown", site, first, last, property="source", limit=50)["results"],
        "entry": _get(server, "/api/v1/stats/entry-pages", site, first, last),
        "exit": _get(server, "/api/v1/stats/exit-pages", site, first, last),
    }


def _send_both(server, specs):
    ordered, shuffled = _site(server), _site(server)
    for spec in sorted(specs, key=lambda spec: spec["at"]):
        _post(server, ordered, spec)
    mixed = list(specs)
    random.Random(5).shuffle(mixed)
    days = sorted({spec["at"].date() for spec in specs})
    for index, spec in enumerate(mixed):
        _post(server, shuffled, spec)
        if index % 8 == 7:  # a read aggregates what came so far: the rest arrives late
            _get(server, "/api/v1/stats/aggregate", shuffled, days[0], days[-1])
    return ordered, shuffled, days[0], days[-1]


def _check(server, specs):
    ordered, shuffled, first, last = _send_both(server, specs)
    expected = _reports(server, ordered, first, last)
    assert expected["aggregate"]["pageviews"] == sum(spec["kind"] == "page_view" for spec in specs)
    assert expected["aggregate"]["visitors"] == len({spec["visitor"] for spec in specs})
    assert _reports(server, shuffled, first, last) == expected
    return expected


def test_shuffled_events_give_the_same_visits_today(proxied):
    now = datetime.now(UTC).replace(microsecond=0)
    specs = script(now - timedelta(hours=11))
    assert max(spec["at"] for spec in specs) < now
    expected = _check(proxied, specs)
    assert {row["value"] for row in expected["source"]} >= {"Google", "Facebook"}


def test_shuffled_events_give_the_same_visits_on_a_closed_day(proxied):
    day = (datetime.now(UTC) - timedelta(days=2)).replace(hour=8, minute=0, second=0, microsecond=0)
    expected = _check(proxied, script(day, seed=13))
    assert expected["aggregate"]["visits"] > expected["aggregate"]["visitors"]
