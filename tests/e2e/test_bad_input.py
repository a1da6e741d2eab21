"""Bad input over HTTP: every refusal names its field in the one JSON error shape, stores
nothing, and nothing (not even random bytes) makes the server answer 500.

Counts are checked before and after each bad request: the private site's aggregate and the
server-wide ``events_accepted`` of ``/api/v1/health``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EVENTS = "/api/v1/events"
CONVERSIONS = "/api/v1/conversions"
COLLECT = "/api/v1/collect"


def _new_site(server, prefix: str) -> str:
    domain = f"{prefix}-{uuid.uuid4().hex[:10]}.test"
    with server.client() as client:
        response = client.post("/api/v1/sites", json={"domain": domain}, headers=server.auth())
    assert response.status_code == 201, response.text
    return domain


def _stamp(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot(client, server, site: str) -> tuple[dict, int]:
    """The site's totals over its whole retention window, and the server's accepted events.
    The window ends tomorrow: an event within the clock skew ahead, sent in a day's last
    minutes, is tomorrow's."""
    start = (datetime.now(UTC) - timedelta(days=600)).date().isoformat()
    end = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    aggregate = client.get(
        "/api/v1/stats/aggregate",
        params={"site": site, "start_date": start, "end_date": end},
        headers=server.auth(),
    )
    assert aggregate.status_code == 200, aggregate.text
    health = client.get("/api/v1/health")
    assert health.status_code == 200, health.text
    return aggregate.json()["data"], health.json()["events_accepted"]


def assert_error(response, status: int, field: str | None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    answer = response.json()
    assert answer["status"] == "error"
    assert set(answer["error"]) >= {"field", "message"}
    assert answer["error"]["message"]
    if field is not None:
        assert answer["error"]["field"] == field, answer
    return answer


def page_view(site: str, **extra) -> dict:
    return {"event_type": "page_view", "site": site, "metadata": {"page_url": f"https://{site}/"}, **extra}


@pytest.fixture(scope="module")
def site(server) -> str:
    domain = _new_site(server, "bad")
    # one good event first, so "did not move" is checked against non-zero counts
    with server.client() as client:
        response = client.post(EVENTS, json=page_view(domain))
    assert response.status_code == 200, response.text
    return domain


@pytest.fixture(scope="module")
def client(server):
    with server.client() as http:
        yield http


# (endpoint, body builder(site) -> bytes, expected status, expected error.field)
Case = tuple[str, Callable[[str], bytes], int, str]


def _json(builder: Callable[[str], object]) -> Callable[[str], bytes]:
    return lambda site: json.dumps(builder(site)).encode()


CASES: dict[str, Case] = {
    "malformed json": (EVENTS, lambda s: b'{"event_type": "page_view",', 400, "$"),
    "malformed json in a batch": (EVENTS, lambda s: b'[{"event_type": "page_view"', 400, "$"),
    "json string": (EVENTS, lambda s: b'"page_view"', 400, "$"),
    "json number": (EVENTS, lambda s: b"42", 400, "$"),
    "json null": (EVENTS, lambda s: b"null", 400, "$"),
    "json true to collect": (COLLECT, lambda s: b"true", 400, "$"),
    "empty body": (EVENTS, lambda s: b"", 400, "$"),
    "event_type a number": (EVENTS, _json(lambda s: {"event_type": 5, "site": s}), 400, "event_type"),
    "event_type null": (EVENTS, _json(lambda s: {"event_type": None, "site": s}), 400, "event_type"),
    "empty event_type": (EVENTS, _json(lambda s: {"event_type": "", "site": s}), 422, "event_type"),
    "5 KB event_type": (EVENTS, _json(lambda s: {"event_type": "x" * 5000, "site": s}), 422, "event_type"),
    "5 KB conversion_type": (
        CONVERSIONS, _json(lambda s: {"conversion_type": "y" * 5000, "site": s}), 422, "conversion_type",
    ),
    "site a number": (EVENTS, _json(lambda s: {"event_type": "page_view", "site": 7}), 400, "site"),
    "metadata a list": (EVENTS, _json(lambda s: {"event_type": "x", "site": s, "metadata": [1]}), 400, "metadata"),
    "page_url a number": (
        EVENTS, _json(lambda s: {"event_type": "x", "site": s, "metadata": {"page_url": 5}}), 422, "metadata.page_url",
    ),
    "amount a string": (
        CONVERSIONS,
        _json(lambda s: {"conversion_type": "buy", "site": s, "metadata": {"amount": "x", "currency": "USD"}}),
        422, "metadata.amount",
    ),
    "amount a boolean": (
        CONVERSIONS,
        _json(lambda s: {"conversion_type": "buy", "site": s, "metadata": {"amount": True}}),
        422, "metadata.amount",
    ),
    "negative amount": (
        CONVERSIONS,
        _json(lambda s: {"conversion_type": "buy", "site": s, "metadata": {"amount": -5, "currency": "USD"}}),
        422, "metadata.amount",
    ),
    "huge amount": (
        CONVERSIONS,
        _json(lambda s: {"conversion_type": "buy", "site": s, "metadata": {"amount": 1e15, "currency": "USD"}}),
        422, "metadata.amount",
    ),
    "currency US": (
        CONVERSIONS,
        _json(lambda s: {"conversion_type": "buy", "site": s, "metadata": {"amount": 5, "currency": "US"}}),
        422, "metadata.currency",
    ),
    "currency digits": (
        CONVERSIONS,
        _json(lambda s: {"conversion_type": "buy", "site": s, "metadata": {"amount": 5, "currency": "123"}}),
        422, "metadata.currency",
    ),
    # currencies come from one table (appliance.money): shape alone is not enough
    **{
        f"currency {code}": (
            CONVERSIONS,
            _json(lambda s, code=code: {"conversion_type": "buy", "site": s, "metadata": {"amount": 5, "currency": code}}),
            422, "metadata.currency",
        )
        for code in ("ZZZ", "ÄÖÜ", "ßßß", "EU R", "\u0130SK")
    },
    "collect currency ZZZ": (
        COLLECT,
        _json(lambda s: {"k": "conversion", "s": s, "u": f"https://{s}/", "n": "buy", "a": 5, "c": "ZZZ"}),
        422, "c",
    ),
    # the unit separator joins a name and its currency in the stored revenue keys
    "event_type with \\x1f": (EVENTS, _json(lambda s: page_view(s, event_type="sign\x1fup")), 422, "event_type"),
    "conversion_type with \\x1f": (
        CONVERSIONS,
        _json(lambda s: {"conversion_type": "buy\x1fEUR", "site": s, "metadata": {"amount": 5, "currency": "USD"}}),
        422, "conversion_type",
    ),
    "conversion_type with a newline": (CONVERSIONS, _json(lambda s: {"conversion_type": "a\nb", "site": s}), 422, "conversion_type"),
    "collect name with \\x1f": (
        COLLECT,
        _json(lambda s: {"k": "conversion", "s": s, "u": f"https://{s}/", "n": "buy\x1f", "a": 5, "c": "EUR"}),
        422, "n",
    ),
    "timestamp yesterday": (EVENTS, _json(lambda s: page_view(s, timestamp="yesterday")), 400, "timestamp"),
    "timestamp a number": (EVENTS, _json(lambda s: page_view(s, timestamp=1722256496)), 400, "timestamp"),
    "timestamp 1 hour ahead": (
        EVENTS, _json(lambda s: page_view(s, timestamp=_stamp(timedelta(hours=1)))), 422, "timestamp",
    ),
    "timestamp 500 days old": (
        EVENTS, _json(lambda s: page_view(s, timestamp=_stamp(-timedelta(days=500)))), 422, "timestamp",
    ),
    "conversion 500 days old": (
        CONVERSIONS,
        _json(lambda s: {"conversion_type": "buy", "site": s, "timestamp": _stamp(-timedelta(days=500))}),
        422, "timestamp",
    ),
    "missing event_type": (EVENTS, _json(lambda s: {"site": s, "metadata": {}}), 400, "event_type"),
    "missing conversion_type": (CONVERSIONS, _json(lambda s: {"site": s}), 400, "conversion_type"),
    "missing u in collect": (COLLECT, _json(lambda s: {"k": "pageview", "s": s}), 400, "u"),
    "unknown collect kind": (COLLECT, _json(lambda s: {"k": "click", "s": s, "u": f"https://{s}/"}), 422, "k"),
    "collect event without name": (COLLECT, _json(lambda s: {"k": "event", "s": s, "u": f"https://{s}/"}), 422, "n"),
    "collect javascript url": (COLLECT, _json(lambda s: {"k": "pageview", "s": s, "u": "javascript:alert(1)"}), 422, "u"),
    "unknown site": (EVENTS, _json(lambda s: page_view("never-added.test")), 404, "site"),
    "unknown site by host": (
        EVENTS,
        _json(lambda s: {"event_type": "page_view", "metadata": {"page_url": "https://never-added.test/"}}),
        404, "metadata.page_url",
    ),
    "no site at all": (EVENTS, _json(lambda s: {"event_type": "page_view"}), 404, "metadata.page_url"),
    # the collect body names its site "s"; the error says "site" (seed vocabulary)
    "unknown site in collect": (
        COLLECT, _json(lambda s: {"k": "pageview", "s": "never-added.test", "u": "https://never-added.test/"}), 404, "site",
    ),
    "javascript page_url": (
        EVENTS,
        _json(lambda s: {"event_type": "page_view", "site": s, "metadata": {"page_url": "javascript:alert(1)"}}),
        422, "metadata.page_url",
    ),
    "ftp page_url": (
        EVENTS,
        _json(lambda s: {"event_type": "page_view", "site": s, "metadata": {"page_url": "ftp://x.test/"}}),
        422, "metadata.page_url",
    ),
    "page_url too long": (
        EVENTS,
        _json(lambda s: {"event_type": "page_view", "site": s, "metadata": {"page_url": f"https://{s}/" + "a" * 3000}}),
        422, "metadata.page_url",
    ),
    "empty batch": (EVENTS, lambda s: b"[]", 422, "$"),
    "empty batch with spaces": (CONVERSIONS, lambda s: b"  [ ]  ", 422, "$"),
    "non-UTF-8 bytes": (EVENTS, lambda s: b"\xff\xfe\x00\x81", 400, "$"),
    "non-UTF-8 inside a string": (
        EVENTS, lambda s: b'{"event_type": "page_\xff\xfe", "site": "' + s.encode() + b'"}', 400, "$",
    ),
    "non-UTF-8 in a collect body": (
        COLLECT, lambda s: b'{"k": "pageview", "s": "' + s.encode() + b'", "u": "https://\xc3\x28/"}', 400, "$",
    ),
    "lone surrogate escape": (EVENTS, lambda s: b'{"event_type": "\\ud800", "site": "x"}', 400, "$"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_and_not_stored(server, client, site, name):
    path, build, status, field = CASES[name]
    before = snapshot(client, server, site)
    response = client.post(path, content=build(site), headers={"content-type": "application/json"})
    assert_error(response, status, field)
    assert snapshot(client, server, site) == before


def test_batch_of_bad_items_is_refused_per_item(server, client, site):
    before = snapshot(client, server, site)
    items = [
        {"event_type": 5, "site": site},
        page_view(site, timestamp=_stamp(timedelta(hours=2))),
        {"event_type": "page_view", "site": site, "metadata": {"page_url": "javascript:alert(1)"}},
        page_view("never-added.test"),
        "not an object",
    ]
    response = client.post(EVENTS, json=items)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["status"] == "error"
    assert answer["accepted"] == 0
    assert [r["status"] for r in answer["results"]] == ["error"] * 5
    assert [r["error"]["field"] for r in answer["results"]] == [
        "[0].event_type", "[1].timestamp", "[2].metadata.page_url", "[3].site", "[4].$",
    ]
    assert snapshot(client, server, site) == before


def test_only_post_is_allowed(server, client, site):
    before = snapshot(client, server, site)
    for path in (EVENTS, CONVERSIONS, COLLECT):
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            response = client.request(method, path)
            assert response.status_code == 405, (method, path, response.text)
            assert response.json()["status"] == "error"
    assert snapshot(client, server, site) == before


def test_retention_boundary(server, client, site):
    """Just inside the 400-day retention is accepted; just outside is refused."""
    inside = client.post(EVENTS, json=page_view(site, timestamp=_stamp(-timedelta(days=399))))
    assert inside.status_code == 200, inside.text
    before = snapshot(client, server, site)
    outside = client.post(EVENTS, json=page_view(site, timestamp=_stamp(-timedelta(days=401))))
    assert_error(outside, 422, "timestamp")
    # a few minutes ahead is clock skew, not the future
    skewed = client.post(EVENTS, json=page_view(site, timestamp=_stamp(timedelta(minutes=2))))
    assert skewed.status_code == 200, skewed.text
    after, accepted = snapshot(client, server, site)
    assert accepted == before[1] + 1
    assert after["pageviews"] == before[0]["pageviews"] + 1


# -- limits: a server of its own with small limits ------------------------------------------
@pytest.fixture(scope="module")
def small_limits(tmp_path_factory):
    from tests.servers import start_server

    handle = start_server(
        tmp_path_factory.mktemp("limits") / "data",
        env={"FOOTFALL_INGEST_MAX_BODY_BYTES": "2048", "FOOTFALL_INGEST_MAX_BATCH_ITEMS": "5"},
    )
    site = _new_site(handle, "limits")
    yield handle, site
    handle.kill()


def test_body_over_the_limit_is_413(small_limits):
    handle, site = small_limits
    with handle.client() as client:
        before = snapshot(client, handle, site)
        body = page_view(site)
        body["metadata"]["note"] = "n" * 4096
        response = client.post(EVENTS, json=body)
        assert_error(response, 413, "$")
        # also when the size is not announced (chunked transfer encoding)
        raw = json.dumps(body).encode()
        chunked = client.post(COLLECT, content=iter([raw[:1000], raw[1000:3000], raw[3000:]]))
        assert_error(chunked, 413, "$")
        assert snapshot(client, handle, site) == before
        # a body under the limit still goes through
        small = client.post(EVENTS, json=page_view(site))
        assert small.status_code == 200, small.text


def test_batch_over_max_items_is_413(small_limits):
    handle, site = small_limits
    with handle.client() as client:
        before = snapshot(client, handle, site)
        response = client.post(EVENTS, json=[{"event_type": "p", "site": site}] * 6)
        assert_error(response, 413, "$")
        assert snapshot(client, handle, site) == before
        exactly = client.post(EVENTS, json=[{"event_type": "p", "site": site}] * 5)
        assert exactly.status_code == 200, exactly.text
        assert exactly.json()["accepted"] == 5
        data, accepted = snapshot(client, handle, site)
        assert data["events"] == before[0]["events"] + 5
        assert accepted == before[1] + 5


# -- nothing ever answers 500 ------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
timestamps = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(),
    st.integers(-1439, 1439),
)
urls = st.sampled_from(["https://", "http://", "javascript:", "", "//", "https://[::1", "http://a:99999/"]).flatmap(
    lambda scheme: st.text(max_size=30).map(lambda rest: scheme + rest)
)


def _seed_like(fuzz_site: str):
    sites = st.sampled_from([fuzz_site, f"www.{fuzz_site}", "", "never-added.test"]) | json_values
    metadata = st.dictionaries(
        st.sampled_from(["page_url", "referrer_url", "amount", "currency", "browser", "device"]) | st.text(max_size=8),
        json_values | urls | st.sampled_from([f"https://{fuzz_site}/x", "USD", "JPY", "us"]),
        max_size=6,
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "event_type": st.sampled_from(["page_view", "click"]) | json_values,
            "conversion_type": st.sampled_from(["purchase"]) | json_values,
            "site": sites,
            "user_id": json_values,
            "session_id": json_values,
            "timestamp": timestamps | json_values,
            "metadata": metadata | json_values,
        },
    )


def _collect_like(fuzz_site: str):
    return st.fixed_dictionaries(
        {},
        optional={
            "k": st.sampled_from(["pageview", "event", "conversion", "engagement"]) | json_values,
            "s": st.sampled_from([fuzz_site, "never-added.test"]) | json_values,
            "u": urls | st.just(f"https://{fuzz_site}/p") | json_values,
            "r": urls | json_values,
            "n": json_values,
            "p": json_values,
            "w": st.integers() | json_values,
            "l": json_values,
            "z": st.sampled_from(["Europe/Berlin", "Nowhere/City"]) | json_values,
            "a": st.floats() | json_values,
            "c": json_values,
            "e": st.integers() | json_values,
            "d": st.integers() | json_values,
        },
    )


@pytest.fixture(scope="module")
def fuzz_site(server) -> str:
    return _new_site(server, "fuzz")


def _encode(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def test_random_bodies_never_answer_500(server, client, fuzz_site):
    shaped = st.one_of(_seed_like(fuzz_site), _collect_like(fuzz_site))
    bodies = st.one_of(
        json_values.map(_encode),
        shaped.map(_encode),
        st.lists(shaped, max_size=4).map(_encode),
        st.binary(max_size=200),
        st.text(max_size=100).map(lambda text: text.encode("utf-8", "surrogatepass")),
    )

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(path=st.sampled_from([EVENTS, COLLECT, CONVERSIONS]), body=bodies,
           content_type=st.sampled_from(["application/json", "text/plain"]))
    def post(path, body, content_type):
        response = client.post(path, content=body, headers={"content-type": content_type})
        assert response.status_code < 500, (path, body, response.status_code, response.text)

    post()
    assert client.get("/api/v1/health").json()["status"] == "ok"
