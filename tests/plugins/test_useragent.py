"""User-agent parsing: real browsers, generated user agents, and respect for given values."""

from __future__ import annotations

import pytest

from appliance.models import Event, EventKind, RequestContext
from plugins import useragent

# (user agent, browser, browser_version, os, os_version, device)
REAL_BROWSERS = {
    "chrome-windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        ("Chrome", "120", "Windows", "10", "Desktop"),
    ),
    "safari-iphone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
        ("Safari", "17", "iOS", "17", "Mobile"),
    ),
    "firefox-linux": (
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
        ("Firefox", "125", "Linux", "", "Desktop"),
    ),
    "samsung-tablet-chrome": (
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.6261.105 Safari/537.36",
        ("Chrome", "122", "Android", "13", "Tablet"),
    ),
    "samsung-tablet-internet": (
        "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36",
        ("Samsung Internet", "24", "Android", "13", "Tablet"),
    ),
    "edge-windows": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
        ("Edge", "124", "Windows", "10", "Desktop"),
    ),
    "safari-mac": (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
        ("Safari", "17", "macOS", "10.15", "Desktop"),
    ),
    "chrome-android-phone": (
        "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        ("Chrome", "124", "Android", "10", "Mobile"),
    ),
    "firefox-android-phone": (
        "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
        ("Firefox", "125", "Android", "14", "Mobile"),
    ),
    "chrome-iphone": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
        ("Chrome", "124", "iOS", "17", "Mobile"),
    ),
    "safari-ipad": (
        "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        ("Safari", "16", "iOS", "16", "Tablet"),
    ),
    "kindle-fire": (
        "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/124.2.1 like Chrome/124.0.6367.118 Safari/537.36",
        ("Amazon Silk", "124", "Android", "9", "Tablet"),
    ),
    "chromebook": (
        "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        ("Chrome", "124", "ChromeOS", "14541", "Desktop"),
    ),
    "firefox-windows-7": (
        "Mozilla/5.0 (Windows NT 6.1; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0",
        ("Firefox", "115", "Windows", "7", "Desktop"),
    ),
}
FIELDS = ("browser", "browser_version", "os", "os_version", "device")


def make_event(**fields) -> Event:
    return Event(
        kind=EventKind.PAGEVIEW,
        site_id=1,
        timestamp=0.0,
        name="pageview",
        hostname="example.com",
        **fields,
    )


def make_context(user_agent: str) -> RequestContext:
    return RequestContext(client_ip="203.0.113.9", user_agent=user_agent, received_at=0.0)


@pytest.mark.parametrize("name", sorted(REAL_BROWSERS))
def test_real_browsers(name):
    user_agent, expected = REAL_BROWSERS[name]
    enriched = useragent.enrich_event(make_event(), make_context(user_agent))
    assert tuple(enriched.get(field, "") for field in FIELDS) == expected


def test_generated_user_agents_name_their_browser():
    # Faker builds user agents from templates of real browser strings: a third-party sample.
    faker = pytest.importorskip("faker")
    generator = faker.Faker()
    generator.seed_instance(20240729)
    wrong = []
    for method, browser in [("chrome", "Chrome"), ("firefox", "Firefox"), ("safari", "Safari")]:
        for _ in range(200):
            user_agent = getattr(generator, method)()
            fields = useragent.describe(user_agent)
            if fields.browser != browser or not fields.browser_version.isdigit():
                wrong.append((browser, fields, user_agent))
            assert fields.device in ("Desktop", "Mobile", "Tablet")
    assert wrong == []


def test_generated_ios_user_agents_are_mobiles():
    faker = pytest.importorskip("faker")
    generator = faker.Faker()
    generator.seed_instance(7)
    samples = [generator.safari() for _ in range(200)]
    ios = [sample for sample in samples if "iPhone" in sample or "iPod" in sample]
    assert len(ios) > 20
    assert [sample for sample in ios if useragent.describe(sample).device != "Mobile"] == []
    assert {useragent.describe(sample).os for sample in ios} == {"iOS"}


@pytest.mark.parametrize("user_agent", ["", "  "])
def test_empty_user_agent_leaves_fields_blank(user_agent):
    assert useragent.enrich_event(make_event(), make_context(user_agent)) is None


def test_values_from_the_seed_api_metadata_are_kept():
    user_agent = REAL_BROWSERS["chrome-android-phone"][0]
    event = make_event(browser="Firefox", device="Tablet")
    enriched = useragent.enrich_event(event, make_context(user_agent))
    # The parsed Chrome version does not belong to the given Firefox: left out.
    assert enriched == {"os": "Android", "os_version": "10"}


def test_matching_given_browser_still_gets_its_version():
    user_agent = REAL_BROWSERS["chrome-windows"][0]
    enriched = useragent.enrich_event(make_event(browser="Chrome"), make_context(user_agent))
    assert enriched["browser_version"] == "120"
    assert "browser" not in enriched


def test_unknown_user_agent_is_a_desktop_with_no_names():
    enriched = useragent.enrich_event(make_event(), make_context("SomethingNobodyKnows"))
    assert enriched == {"device": "Desktop"}


def test_descriptions_are_cached_per_user_agent():
    assert useragent.describe.cache_info().maxsize == 8192
    user_agent = REAL_BROWSERS["edge-windows"][0] + " cache-probe"
    useragent.enrich_event(make_event(), make_context(user_agent))
    hits = useragent.describe.cache_info().hits
    useragent.enrich_event(make_event(), make_context(user_agent))
    assert useragent.describe.cache_info().hits == hits + 1


def _enrich_through_a_dict(event, context):
    """The enrichment as it was written before (a dict of the parsed fields per event)."""
    user_agent = context.user_agent[: useragent.MAX_USER_AGENT_LENGTH]
    if not user_agent.strip():
        return None
    fields = useragent.describe(user_agent)._asdict()
    if event.browser and event.browser != fields["browser"]:
        fields["browser_version"] = ""
    if event.os and event.os != fields["os"]:
        fields["os_version"] = ""
    filled = {name: value for name, value in fields.items() if value and not getattr(event, name)}
    return filled or None


@pytest.mark.parametrize("name", sorted(REAL_BROWSERS))
def test_field_by_field_enrichment_matches_the_dict_of_fields(name):
    user_agent = REAL_BROWSERS[name][0]
    givens = [{}, {"browser": "Chrome"}, {"browser": "Firefox"}, {"os": "Android"}, {"os": "Windows"},
              {"browser_version": "1"}, {"os_version": "2"}, {"device": "Tablet"},
              {"browser": "Safari", "browser_version": "9", "os": "iOS", "device": "Mobile"}]
    for given in givens:
        event = make_event(**given)
        context = make_context(user_agent)
        assert useragent.enrich_event(event, context) == _enrich_through_a_dict(event, context), given
        assert list(useragent.enrich_event(event, context) or ()) == list(_enrich_through_a_dict(event, context) or ())
