"""Plausible's and Umami's bodies as drafts (appliance/ingest/compat.py), and the site aliases
that let their site names reach a Footfall site (appliance/sites.py)."""

from __future__ import annotations

import msgspec
import pytest

from appliance.ingest.compat import (
    PlausibleBody,
    UmamiBody,
    draft_from_umami,
    drafts_from_plausible,
)
from appliance.ingest.drafts import InvalidInput
from appliance.models import EventKind
from appliance.sites import SiteError

plausible = msgspec.json.Decoder(PlausibleBody)
umami = msgspec.json.Decoder(UmamiBody)
WEBSITE = "94db1cb1-74f4-4a40-ad6c-962362670409"


def test_plausible_long_keys_win_and_domains_fan_out():
    drafts = drafts_from_plausible(plausible.decode(
        b'{"name": "pageview", "n": "ignored", "url": "https://www.a.test/x/?q=1#top", "domain": "a.test, b.test",'
        b' "referrer": "https://duckduckgo.com/?q=secret", "props": {"k": 1, "nested": {"no": 1}}}'
    ))
    assert [d.site_hint for d in drafts] == ["a.test", "b.test"]
    assert len(drafts_from_plausible(plausible.decode(b'{"n": "pageview", "u": "https://a.test/", "d": "a.test,a.test"}'))) == 1
    first = drafts[0]
    assert (first.kind, first.name, first.page.hostname, first.page.path) == (EventKind.PAGEVIEW, "pageview", "a.test", "/x")
    assert first.fields["referrer"] == "https://duckduckgo.com/" and first.fields["props"] == {"k": "1"}


def test_plausible_short_keys_string_props_revenue_hash_and_engagement():
    [draft] = drafts_from_plausible(plausible.decode(
        b'{"n": "Purchase", "u": "https://a.test/app#/cart", "d": "a.test", "h": 1, "p": "{\\"plan\\": \\"pro\\"}",'
        b' "$": {"currency": "eur", "amount": "19.99"}}'
    ))
    assert (draft.kind, draft.page.path, draft.fields["props"]) == (EventKind.CONVERSION, "/app#/cart", {"plan": "pro"})
    assert (draft.fields["revenue"], draft.fields["currency"]) == (1999, "EUR")
    [ping] = drafts_from_plausible(plausible.decode(b'{"n": "engagement", "u": "https://a.test/", "d": "a.test", "e": 4200, "sd": 180}'))
    assert (ping.kind, ping.fields["engaged_ms"], ping.fields["scroll_depth"]) == (EventKind.ENGAGEMENT, 4200, 100)


@pytest.mark.parametrize(("body", "field"), [
    (b'{"u": "https://a.test/", "d": "a.test"}', "name"),
    (b'{"n": "pageview", "d": "a.test"}', "url"),
    (b'{"n": "pageview", "u": "https://a.test/"}', "domain"),
    (b'{"n": "pageview", "u": "/relative", "d": "a.test"}', "url"),
    (b'{"n": "x", "u": "https://a.test/", "d": "a.test", "p": "not json"}', "props"),
    (b'{"n": "x", "u": "https://a.test/", "d": "a.test", "$": {"currency": "EUR"}}', "revenue.amount"),
    (b'{"n": "bad\\u0001name", "u": "https://a.test/", "d": "a.test"}', "name"),
])
def test_plausible_bad_bodies_name_the_field(body, field):
    with pytest.raises(InvalidInput) as error:
        drafts_from_plausible(plausible.decode(body))
    assert error.value.field == field


def test_umami_payload():
    draft = draft_from_umami(umami.decode(
        b'{"type": "event", "payload": {"website": "' + WEBSITE.encode() + b'", "hostname": "a.test",'
        b' "url": "/docs?utm_source=x#intro", "screen": "390x844", "language": "de-DE", "name": "Signup",'
        b' "data": {"plan": "pro"}, "timestamp": 1700000000}}'
    ))
    assert (draft.kind, draft.name, draft.site_hint, draft.page.hostname, draft.page.path) == (
        EventKind.CUSTOM, "Signup", WEBSITE, "a.test", "/docs#intro")
    assert draft.page.query == {"utm_source": "x"} and draft.timestamp == 1700000000
    assert (draft.fields["screen"], draft.fields["language"], draft.fields["props"]) == ("Mobile", "de-DE", {"plan": "pro"})
    with pytest.raises(InvalidInput) as error:
        draft_from_umami(umami.decode(b'{"type": "event", "payload": {"url": "/"}}'))
    assert error.value.field == "payload.website"


def test_site_aliases_resolve_and_stay_unique(appliance):
    sites = appliance.sites
    site = sites.add("new.test", umami_website_id=WEBSITE.upper(), plausible_site_id="https://www.old.test/")
    assert (site.umami_website_id, site.plausible_site_id) == (WEBSITE, "old.test")
    assert sites.get(WEBSITE).id == site.id and sites.get("old.test").id == site.id and sites.get("www.old.test").id == site.id
    with pytest.raises(SiteError) as clash:
        sites.add("other.test", umami_website_id=WEBSITE)
    assert (clash.value.field, clash.value.status) == ("umami_website_id", 409)
    with pytest.raises(SiteError) as taken:
        sites.add("third.test", plausible_site_id="new.test")
    assert taken.value.field == "plausible_site_id"
    with pytest.raises(SiteError):
        sites.change("new.test", umami_website_id="nope")
    sites.change("new.test", plausible_site_id="")
    assert sites.get("old.test") is None and sites.get(WEBSITE).id == site.id
