"""The ingest pipeline, step by step: build, resolve_site, check_time, filters, enrichers, visitor id.

Runs against a real in-process appliance (the ``appliance`` fixture) with the built-in plugins.
The privacy tests read the LMDB file itself: no raw IP address or user id may ever reach it.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from appliance.ingest.drafts import (
    Dropped,
    InvalidInput,
    draft_from_collect_body,
    draft_from_conversion_body,
    draft_from_event_body,
)
from appliance.models import (
    CollectBody,
    ConversionBody,
    DropReason,
    EventBody,
    EventKind,
    RequestContext,
)

RECEIVED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()
DAY = 86400
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
CRAWLER = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
DISTINCTIVE_IP = "203.0.113.77"
DISTINCTIVE_USER = "jane.q.distinctive-7f3a9c@example.org"
DISTINCTIVE_VISITOR_IP = "5.9.77.123"
DISTINCTIVE_AGENT_MARK = "DistinctiveProbe/9.8.7"
DISTINCTIVE_AGENT = f"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/125.0 {DISTINCTIVE_AGENT_MARK}"


def context(
    ip: str = "198.51.100.10", agent: str = BROWSER, received_at: float = RECEIVED_AT
) -> RequestContext:
    return RequestContext(client_ip=ip, user_agent=agent, received_at=received_at)


def pageview(site: str = "pipeline.example", path: str = "/", **metadata) -> EventBody:
    return EventBody(
        event_type="page_view",
        site=site,
        metadata={"page_url": f"https://{site}{path}", **metadata},
    )


@pytest.fixture
def site(appliance):
    return appliance.sites.add("pipeline.example", timezone="UTC")


def process(appliance, body, request: RequestContext | None = None):
    if isinstance(body, EventBody):
        draft = draft_from_event_body(body)
    elif isinstance(body, ConversionBody):
        draft = draft_from_conversion_body(body)
    else:
        draft = draft_from_collect_body(body)
    return appliance.pipeline.process(draft, request or context())


# -- build: validating the body ------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "body", "field"),
    [
        (draft_from_event_body, EventBody(event_type=""), "event_type"),
        (draft_from_event_body, EventBody(event_type="x" * 121), "event_type"),
        (
            draft_from_event_body,
            EventBody(event_type="click", metadata={"page_url": 5}),
            "metadata.page_url",
        ),
        (
            draft_from_event_body,
            EventBody(event_type="click", metadata={"page_url": "ftp://files.example/a"}),
            "metadata.page_url",
        ),
        (
            draft_from_event_body,
            EventBody(event_type="click", metadata={"page_url": "https://a.example/" + "p" * 2000}),
            "metadata.page_url",
        ),
        (
            draft_from_event_body,
            EventBody(event_type="click", metadata={"browser": 3}),
            "metadata.browser",
        ),
        (draft_from_conversion_body, ConversionBody(conversion_type=""), "conversion_type"),
        (
            draft_from_conversion_body,
            ConversionBody(conversion_type="buy", metadata={"amount": "12"}),
            "metadata.amount",
        ),
        (
            draft_from_conversion_body,
            ConversionBody(conversion_type="buy", metadata={"amount": True}),
            "metadata.amount",
        ),
        (
            draft_from_conversion_body,
            ConversionBody(conversion_type="buy", metadata={"amount": -1}),
            "metadata.amount",
        ),
        (
            draft_from_conversion_body,
            ConversionBody(conversion_type="buy", metadata={"amount": 5, "currency": "EURO"}),
            "metadata.currency",
        ),
        (
            draft_from_conversion_body,
            ConversionBody(conversion_type="buy", metadata={"page_url": 7}),
            "metadata.page_url",
        ),
        (draft_from_collect_body, CollectBody(k="bogus", u="https://a.example/"), "k"),
        (draft_from_collect_body, CollectBody(k="pageview", u="/relative/path"), "u"),
        (draft_from_collect_body, CollectBody(k="event", u="https://a.example/"), "n"),
        (draft_from_collect_body, CollectBody(k="conversion", u="https://a.example/"), "n"),
    ],
)
def test_build_names_the_invalid_field(build, body, field):
    with pytest.raises(InvalidInput) as invalid:
        build(body)

    assert invalid.value.field == field
    assert invalid.value.message
    assert invalid.value.status == 422


def test_build_normalises_the_page_and_the_revenue():
    draft = draft_from_conversion_body(
        ConversionBody(
            conversion_type="purchase",
            metadata={
                "page_url": "https://WWW.Pipeline.example/checkout/?step=2",
                "amount": 19.99,
                "currency": "usd",
                "plan": "pro",
            },
        )
    )

    assert draft.kind is EventKind.CONVERSION
    assert (draft.page.hostname, draft.page.path, draft.page.query) == (
        "pipeline.example",
        "/checkout",
        {"step": "2"},
    )
    assert draft.fields["revenue"] == 1999 and draft.fields["currency"] == "USD"
    assert draft.fields["props"] == {"plan": "pro"}
    assert (
        draft_from_conversion_body(
            ConversionBody(conversion_type="x", metadata={"amount": 500, "currency": "JPY"})
        ).fields["revenue"]
        == 500
    )
    assert (
        draft_from_conversion_body(
            ConversionBody(conversion_type="x", metadata={"amount": 1.5, "currency": "KWD"})
        ).fields["revenue"]
        == 1500
    )


# -- resolve_site ------------------------------------------------------------------------


def test_resolve_site_by_name_or_by_page_hostname(appliance, site):
    assert appliance.pipeline.resolve_site(draft_from_event_body(pageview())).id == site.id
    by_host = draft_from_collect_body(CollectBody(k="pageview", u="https://www.pipeline.example/a"))
    assert appliance.pipeline.resolve_site(by_host).id == site.id


def test_an_unknown_site_is_a_404_on_the_field_that_named_it_and_is_counted(appliance, site):
    with pytest.raises(InvalidInput) as named:
        process(appliance, pageview(site="nobody.example"))
    with pytest.raises(InvalidInput) as by_url:
        process(appliance, CollectBody(k="pageview", u="https://stranger.example/"))
    with pytest.raises(InvalidInput) as missing:
        process(appliance, EventBody(event_type="click"))

    assert (named.value.field, named.value.status) == ("site", 404)
    assert by_url.value.field == "metadata.page_url"
    assert missing.value.message == "site is required"
    assert appliance.pipeline.drop_counts()[DropReason.UNKNOWN_SITE] == 3


def test_a_hostname_outside_the_allowed_list_is_dropped(appliance):
    appliance.sites.add("shop.example", allowed_hostnames=["shop.example", "*.shop.example"])

    assert process(appliance, pageview(site="shop.example")).hostname == "shop.example"
    assert (
        process(
            appliance,
            EventBody(
                event_type="page_view",
                site="shop.example",
                metadata={"page_url": "https://eu.shop.example/"},
            ),
        ).hostname
        == "eu.shop.example"
    )
    with pytest.raises(Dropped) as dropped:
        process(
            appliance,
            EventBody(
                event_type="page_view",
                site="shop.example",
                metadata={"page_url": "https://copycat.example/"},
            ),
        )

    assert dropped.value.reason is DropReason.HOSTNAME_NOT_ALLOWED
    assert appliance.pipeline.drop_counts() == {"hostname_not_allowed": 1}


# -- check_time --------------------------------------------------------------------------


def test_check_time_accepts_the_past_within_retention_and_the_near_future(appliance, site):
    at = datetime.fromtimestamp(RECEIVED_AT, UTC)
    skew = appliance.settings.ingest.clock_skew_seconds

    assert process(appliance, pageview()).timestamp == RECEIVED_AT
    assert (
        process(
            appliance,
            EventBody(
                event_type="click", site="pipeline.example", timestamp=at - timedelta(days=30)
            ),
        ).timestamp
        == RECEIVED_AT - 30 * DAY
    )
    assert (
        process(
            appliance,
            EventBody(
                event_type="click",
                site="pipeline.example",
                timestamp=at + timedelta(seconds=skew - 1),
            ),
        ).timestamp
        == RECEIVED_AT + skew - 1
    )
    naive = EventBody(
        event_type="click",
        site="pipeline.example",
        timestamp=(at - timedelta(hours=1)).replace(tzinfo=None),
    )
    assert process(appliance, naive).timestamp == RECEIVED_AT - 3600  # naive means UTC


def test_check_time_refuses_the_far_future_and_beyond_retention(appliance, site):
    at = datetime.fromtimestamp(RECEIVED_AT, UTC)
    skew = appliance.settings.ingest.clock_skew_seconds

    with pytest.raises(InvalidInput) as future:
        process(
            appliance,
            EventBody(
                event_type="click",
                site="pipeline.example",
                timestamp=at + timedelta(seconds=skew + 60),
            ),
        )
    with pytest.raises(InvalidInput) as old:
        process(
            appliance,
            EventBody(
                event_type="click",
                site="pipeline.example",
                timestamp=at - timedelta(days=site.retention_days + 1),
            ),
        )

    assert future.value.field == old.value.field == "timestamp"
    assert appliance.pipeline.drop_counts() == {"in_future": 1, "too_old": 1}


# -- filter_event and enrich_event hooks -------------------------------------------------


def test_the_bot_filter_drops_crawlers_and_counts_them(appliance, site):
    with pytest.raises(Dropped) as dropped:
        process(appliance, pageview(), context(agent=CRAWLER))

    assert dropped.value.reason == DropReason.BOT
    assert appliance.pipeline.drop_counts() == {"bot": 1}


def test_every_drop_reason_is_counted_and_reported_in_health(appliance, site):
    at = datetime.fromtimestamp(RECEIVED_AT, UTC)
    appliance.sites.add("fenced.example", allowed_hostnames=["fenced.example"])
    attempts = [
        (pageview(site="unknown.example"), context()),
        (pageview(), context(agent=CRAWLER)),
        (pageview(), context(agent=CRAWLER)),
        (
            EventBody(
                event_type="page_view",
                site="fenced.example",
                metadata={"page_url": "https://elsewhere.example/"},
            ),
            context(),
        ),
        (
            EventBody(event_type="x", site="pipeline.example", timestamp=at + timedelta(days=1)),
            context(),
        ),
        (
            EventBody(event_type="x", site="pipeline.example", timestamp=at - timedelta(days=999)),
            context(),
        ),
        (pageview(), context()),  # accepted
    ]
    for body, request in attempts:
        with contextlib.suppress(Dropped, InvalidInput):
            process(appliance, body, request)

    expected = {
        "unknown_site": 1,
        "bot": 2,
        "hostname_not_allowed": 1,
        "in_future": 1,
        "too_old": 1,
    }
    assert appliance.pipeline.drop_counts() == expected
    assert appliance.health()["drops"] == expected


def test_enrichers_fill_in_browser_source_and_channel(appliance, site):
    event = process(
        appliance,
        pageview(
            path="/post?utm_campaign=spring",
            referrer_url="https://www.google.com/search?q=footfall",
        ),
    )

    assert event.kind is EventKind.PAGEVIEW
    assert (event.hostname, event.path) == ("pipeline.example", "/post")
    assert event.browser == "Chrome"
    assert event.referrer == "https://www.google.com/search"  # the query string is not kept
    assert (event.referrer_host, event.source) == ("google.com", "Google")
    assert event.channel == "Organic Search"
    assert event.utm_campaign == "spring"


def test_a_browser_named_by_the_sender_wins_over_the_user_agent(appliance, site):
    event = process(appliance, pageview(browser="Netscape Navigator", device="desktop"))

    assert event.browser == "Netscape Navigator"
    assert event.device == "Desktop"


# -- identify_visitor --------------------------------------------------------------------


def test_the_visitor_id_differs_per_site(appliance, site):
    other = appliance.sites.add("other.example")

    here = process(appliance, pageview())
    there = process(appliance, pageview(site=other.domain))

    assert here.visitor_id != there.visitor_id
    assert not here.user_hashed


def test_the_visitor_id_is_stable_within_a_day(appliance, site):
    midnight = RECEIVED_AT - RECEIVED_AT % DAY
    morning = process(appliance, pageview(), context(received_at=midnight + 60))
    evening = process(appliance, pageview(path="/later"), context(received_at=midnight + DAY - 60))
    elsewhere = process(
        appliance, pageview(), context(ip="198.51.100.11", received_at=midnight + 3600)
    )
    other_browser = process(
        appliance,
        pageview(),
        context(agent=BROWSER.replace("124", "125"), received_at=midnight + 3600),
    )

    assert morning.visitor_id == evening.visitor_id
    assert elsewhere.visitor_id != morning.visitor_id
    assert other_browser.visitor_id != morning.visitor_id


def test_the_visitor_id_changes_with_the_salt_day(appliance, site):
    hasher = appliance.visitors
    midnight = RECEIVED_AT - RECEIVED_AT % DAY

    today = hasher.anonymous_id(site.id, "198.51.100.10", BROWSER, midnight + 10)
    still_today = hasher.anonymous_id(site.id, "198.51.100.10", BROWSER, midnight + DAY - 10)
    tomorrow = hasher.anonymous_id(site.id, "198.51.100.10", BROWSER, midnight + DAY + 10)
    day_after = hasher.anonymous_id(site.id, "198.51.100.10", BROWSER, midnight + 2 * DAY + 10)

    assert today == still_today
    assert len({today, tomorrow, day_after}) == 3


def test_a_user_id_is_hashed_and_stable_across_days(appliance, site):
    other = appliance.sites.add("other.example")
    body = EventBody(event_type="login", site="pipeline.example", user_id="customer-42")

    first = process(appliance, body, context(received_at=RECEIVED_AT))
    week_later = process(
        appliance,
        body,
        context(ip="198.51.100.99", agent="Other/1.0", received_at=RECEIVED_AT + 7 * DAY),
    )
    other_site = process(
        appliance, EventBody(event_type="login", site=other.domain, user_id="customer-42")
    )
    anonymous = process(appliance, EventBody(event_type="login", site="pipeline.example"))

    assert first.user_hashed and week_later.user_hashed
    assert first.visitor_id == week_later.visitor_id
    assert other_site.visitor_id != first.visitor_id
    assert anonymous.visitor_id != first.visitor_id and not anonymous.user_hashed


# -- server-side events: the visitor's user agent and address -----------------------------

GERMAN_IP = "5.9.0.1"  # a Hetzner address: iptocc says DE
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def trusted(ip: str = "198.51.100.10", agent: str = "python-requests/2.32", sites=None) -> RequestContext:
    """A request authenticated with an API key whose user may read ``sites`` (all by default)."""
    return RequestContext(
        client_ip=ip, user_agent=agent, received_at=RECEIVED_AT,
        caller=lambda site_id: sites is None or site_id in sites,
    )


def test_metadata_user_agent_is_the_visitors_for_classification_bots_and_visitor_id(appliance, site):
    """From anyone: the body's user agent replaces curl's for the bot filter, the browser and
    device, and the visitor id; the request's User-Agent plays no part."""
    body = pageview(user_agent=IPHONE)
    from_curl = process(appliance, body, context(agent="curl/8.5.0"))
    from_requests = process(appliance, body, context(agent="python-requests/2.32"))

    assert (from_curl.browser, from_curl.os, from_curl.device) == ("Safari", "iOS", "Mobile")
    assert from_curl.visitor_id == from_requests.visitor_id
    assert from_curl.visitor_id == process(appliance, pageview(), context(agent=IPHONE)).visitor_id
    assert "user_agent" not in from_curl.props
    with pytest.raises(Dropped) as dropped:
        process(appliance, pageview(user_agent=CRAWLER), context(agent=BROWSER))
    assert dropped.value.reason == DropReason.BOT


def test_without_a_credential_curl_is_a_bot_and_metadata_ip_is_ignored(appliance, site):
    with pytest.raises(Dropped) as dropped:
        process(appliance, pageview(), context(agent="curl/8.5.0"))
    assert dropped.value.reason == DropReason.BOT

    claimed = process(appliance, pageview(user_agent=IPHONE, ip=GERMAN_IP), context(ip="198.51.100.10"))
    assert claimed.country == ""  # the body's address is not believed from an anonymous caller
    assert claimed.visitor_id == process(appliance, pageview(user_agent=IPHONE)).visitor_id
    assert "ip" not in claimed.props


def test_a_trusted_servers_own_http_library_is_not_a_bot_nor_a_browser(appliance, site):
    for agent in ("curl/8.5.0", "python-requests/2.32", "Go-http-client/1.1", "okhttp/4.12"):
        event = process(appliance, pageview(), trusted(agent=agent))
        assert (event.browser, event.os, event.device) == ("", "", "")
    # the same visitor whatever library the server uses
    assert process(appliance, pageview(), trusted(agent="curl/8.5.0")).visitor_id == process(
        appliance, pageview(), trusted(agent="okhttp/4.12")
    ).visitor_id


def test_a_trusted_server_may_forward_the_visitors_user_agent_and_address(appliance, site):
    forwarded = process(appliance, pageview(), trusted(agent=IPHONE))
    assert forwarded.device == "Mobile"
    with pytest.raises(Dropped):  # a forwarded crawler is still a crawler
        process(appliance, pageview(), trusted(agent=CRAWLER))

    event = process(appliance, pageview(user_agent=IPHONE, ip=GERMAN_IP), trusted())
    assert (event.country, event.browser, event.device) == ("DE", "Safari", "Mobile")
    # the visitor id is the one the visitor's own browser would have had
    assert event.visitor_id == process(appliance, pageview(), context(ip=GERMAN_IP, agent=IPHONE)).visitor_id
    assert set(event.props) == set()


def test_explicit_browser_and_device_are_kept_as_given(appliance, site):
    event = process(appliance, pageview(user_agent=IPHONE, browser="Firefox", device="desktop"), trusted())
    assert (event.browser, event.device, event.os) == ("Firefox", "Desktop", "iOS")


def test_a_credential_without_access_to_the_site_is_refused(appliance, site):
    with pytest.raises(InvalidInput) as refused:
        process(appliance, pageview(), trusted(sites=set()))
    assert (refused.value.status, refused.value.field) == (403, "site")
    assert process(appliance, pageview(), trusted(sites={site.id})).site_id == site.id


@pytest.mark.parametrize(
    ("metadata", "field"),
    [({"user_agent": 5}, "metadata.user_agent"), ({"ip": "not-an-ip"}, "metadata.ip"), ({"ip": 1}, "metadata.ip")],
)
def test_visitor_fields_are_checked(metadata, field):
    for build, body in (
        (draft_from_event_body, EventBody(event_type="x", metadata=metadata)),
        (draft_from_conversion_body, ConversionBody(conversion_type="x", metadata=metadata)),
    ):
        with pytest.raises(InvalidInput) as invalid:
            build(body)
        assert invalid.value.field == field


# -- privacy: what reaches the disk ------------------------------------------------------


def test_no_raw_ip_address_or_user_id_reaches_the_lmdb_file(appliance, site):
    request = context(ip=DISTINCTIVE_IP)
    events = [
        process(appliance, pageview(path="/privacy-probe-page"), request),
        process(
            appliance,
            EventBody(
                event_type="signup",
                site=site.domain,
                user_id=DISTINCTIVE_USER,
                metadata={"page_url": "https://pipeline.example/join"},
            ),
            request,
        ),
        process(
            appliance,
            ConversionBody(
                conversion_type="purchase",
                site=site.domain,
                user_id=DISTINCTIVE_USER,
                metadata={"amount": 10},
            ),
            request,
        ),
        process(
            appliance,
            CollectBody(
                k="pageview", u="https://pipeline.example/tracker-page", r="https://news.example/"
            ),
            request,
        ),
        process(
            appliance,
            CollectBody(k="engagement", u="https://pipeline.example/tracker-page", e=5000, d=80),
            request,
        ),
        # server-side: the visitor's address and user agent in the body, from a trusted caller
        process(
            appliance,
            pageview(path="/server-side", ip=DISTINCTIVE_VISITOR_IP, user_agent=DISTINCTIVE_AGENT),
            trusted(),
        ),
        process(
            appliance,
            ConversionBody(
                conversion_type="purchase",
                site=site.domain,
                metadata={"amount": 5, "ip": DISTINCTIVE_VISITOR_IP, "user_agent": DISTINCTIVE_AGENT},
            ),
            trusted(),
        ),
        process(appliance, pageview(path="/forwarded"), trusted(ip=DISTINCTIVE_VISITOR_IP, agent=DISTINCTIVE_AGENT)),
    ]

    appliance.record_sync(events)
    appliance.store.sync()
    # every file of the data dir: the LMDB file, its lock file, plugin and other files
    files = [path for path in Path(appliance.settings.data_dir).rglob("*") if path.is_file()]
    assert appliance.store.path / "data.mdb" in files
    data = b"".join(path.read_bytes() for path in files)

    assert b"/privacy-probe-page" in data  # the events really are in this file
    assert b"/server-side" in data
    for secret in (DISTINCTIVE_IP, DISTINCTIVE_USER, "customer-42", DISTINCTIVE_VISITOR_IP, DISTINCTIVE_AGENT_MARK):
        assert secret.encode() not in data, secret
    stored = appliance.read_events(site, RECEIVED_AT - 1, RECEIVED_AT + 1)
    assert len(stored) == len(events)
    assert all(
        secret not in repr(event)
        for event in stored
        for secret in (DISTINCTIVE_IP, DISTINCTIVE_USER, DISTINCTIVE_VISITOR_IP, DISTINCTIVE_AGENT_MARK)
    )
