"""Referrer sources and channels, checked against referer-parser's own database and by hand."""

from __future__ import annotations

import json

import pytest
import referer_parser

from appliance.models import Event, EventKind, RequestContext
from plugins import referrers

# Database entries this plugin deliberately files elsewhere, or cannot match.
RECLASSIFIED = {"youtube.com", "youtu.be", "vimeo.com"}  # Organic Video, not Organic Social
PATH_ONLY_ENTRIES = {"apollo.lv/portal/search/", "orange.fr/webmail"}  # lookups are per host


def make_event(referrer: str = "", hostname: str = "example.com") -> Event:
    return Event(
        kind=EventKind.PAGEVIEW,
        site_id=1,
        timestamp=0.0,
        name="pageview",
        hostname=hostname,
        referrer=referrer,
    )


def make_context(**page_query: str) -> RequestContext:
    return RequestContext(
        client_ip="203.0.113.9", user_agent="", received_at=0.0, page_query=page_query
    )


def enrich(referrer: str = "", hostname: str = "example.com", **page_query: str) -> dict:
    return referrers.enrich_event(make_event(referrer, hostname), make_context(**page_query))


def referer_database() -> dict[str, dict[str, dict]]:
    with open(referer_parser.JSON_FILE, encoding="utf-8") as database:
        return json.load(database)


def database_domains(medium: str) -> list[tuple[str, str]]:
    return [
        (name, domain)
        for name, entry in referer_database()[medium].items()
        for domain in entry["domains"]
        if domain == domain.lower()  # "Sozluk.com": a host is never upper case
    ]


@pytest.mark.parametrize(
    ("medium", "channel"),
    [("search", "Organic Search"), ("social", "Organic Social"), ("email", "Email")],
)
def test_referer_parser_database_domains_map_to_their_channel(medium, channel):
    domains = database_domains(medium)
    assert len(domains) > 10
    wrong = []
    for name, domain in domains:
        if domain in RECLASSIFIED or domain in PATH_ONLY_ENTRIES:
            continue
        url = f"https://{domain}" if "/" in domain else f"https://{domain}/"
        enriched = enrich(url)
        if enriched["channel"] != channel or enriched["medium"] != medium:
            wrong.append((name, domain, enriched))
    assert wrong == []


def compact(name: str) -> str:
    return "".join(character for character in name.lower() if character.isalnum())


def test_referer_parser_search_engines_and_social_networks_by_utm_source():
    database = referer_database()
    search_names = {compact(name) for name in database["search"]}
    for name in database["search"]:
        assert enrich(utm_source=name, utm_medium="cpc")["channel"] == "Paid Search", name
    for name in database["social"]:
        # "Mail.ru" and "Google+" (read "google") also name search engines: search wins.
        expected = "Paid Search" if compact(name) in search_names else "Paid Social"
        assert enrich(utm_source=name, utm_medium="cpc")["channel"] == expected, name


def test_referer_names_are_the_sources():
    assert enrich("https://www.google.com/")["source"] == "Google"
    assert enrich("https://news.ycombinator.com/item?id=1")["source"] == "Hacker News"
    assert enrich("https://duckduckgo.com/")["source"] == "DuckDuckGo"


CHANNEL_CASES = [
    ("", {}, "Direct", ""),
    ("https://www.google.com/", {}, "Organic Search", "Google"),
    ("https://www.bing.com/search?q=footfall", {}, "Organic Search", "Bing"),
    ("https://search.brave.com/", {}, "Organic Search", "Brave"),
    ("https://l.facebook.com/l.php?u=x", {}, "Organic Social", "Facebook"),
    ("https://t.co/abc", {}, "Organic Social", "Twitter"),
    ("https://bsky.app/profile/someone", {}, "Organic Social", "Bluesky"),
    ("https://news.ycombinator.com/item?id=1", {}, "Organic Social", "Hacker News"),
    ("https://www.youtube.com/watch?v=1", {}, "Organic Video", "YouTube"),
    ("https://m.twitch.tv/", {}, "Organic Video", "Twitch"),
    ("https://www.tiktok.com/@someone", {}, "Organic Video", "TikTok"),
    ("https://mail.google.com/mail/u/0/", {}, "Email", "Gmail"),
    ("", {"utm_source": "newsletter"}, "Email", "newsletter"),
    ("", {"utm_source": "mailchimp", "utm_medium": "e-mail"}, "Email", "mailchimp"),
    ("https://blog.example.org/post", {}, "Referral", "blog.example.org"),
    ("https://github.com/owner/repo", {}, "Organic Social", "GitHub"),
    ("", {"gclid": "abc"}, "Paid Search", "Google"),
    ("", {"msclkid": "abc"}, "Paid Search", "Bing"),
    (
        "https://www.google.com/",
        {"utm_source": "google", "utm_medium": "cpc"},
        "Paid Search",
        "Google",
    ),
    ("", {"utm_source": "facebook", "utm_medium": "paid_social"}, "Paid Social", "Facebook"),
    (
        "",
        {"utm_source": "meta_ads", "utm_medium": "paid", "fbclid": "x"},
        "Paid Social",
        "meta_ads",
    ),
    ("", {"ttclid": "abc"}, "Paid Social", "TikTok"),
    ("", {"li_fat_id": "abc"}, "Paid Social", "LinkedIn"),
    ("", {"fbclid": "abc"}, "Organic Social", "Facebook"),
    ("", {"utm_source": "adnetwork", "utm_medium": "cpc"}, "Paid Other", "adnetwork"),
    ("", {"utm_source": "partner", "utm_medium": "affiliate"}, "Affiliates", "partner"),
    ("", {"utm_source": "adnetwork", "utm_medium": "banner"}, "Display", "adnetwork"),
    ("", {"utm_source": "adnetwork", "utm_medium": "display"}, "Display", "adnetwork"),
    ("https://chatgpt.com/", {}, "AI Assistants", "ChatGPT"),
    ("https://chat.openai.com/", {}, "AI Assistants", "ChatGPT"),
    ("https://www.perplexity.ai/search", {}, "AI Assistants", "Perplexity"),
    ("https://claude.ai/chat/1", {}, "AI Assistants", "Claude"),
    ("https://gemini.google.com/app", {}, "AI Assistants", "Gemini"),
    ("https://copilot.microsoft.com/", {}, "AI Assistants", "Copilot"),
    ("https://you.com/search?q=x", {}, "AI Assistants", "You.com"),
    ("https://www.phind.com/", {}, "AI Assistants", "Phind"),
    ("", {"utm_source": "chatgpt.com"}, "AI Assistants", "ChatGPT"),
    ("", {"utm_campaign": "spring"}, "Referral", ""),
    ("android-app://com.google.android.googlequicksearchbox/", {}, "Organic Search", "Google"),
]


@pytest.mark.parametrize(("referrer", "page_query", "channel", "source"), CHANNEL_CASES)
def test_channels(referrer, page_query, channel, source):
    enriched = enrich(referrer, **page_query)
    assert enriched["channel"] == channel
    assert enriched.get("source", "") == source


def test_every_channel_is_tested_and_in_the_shared_vocabulary():
    assert len(referrers.CHANNELS) == 12
    assert {case[2] for case in CHANNEL_CASES} == set(referrers.CHANNELS)


@pytest.mark.parametrize(
    ("referrer", "hostname"),
    [
        ("https://example.com/pricing", "example.com"),
        ("https://www.example.com/pricing", "example.com"),
        ("https://example.com/", "www.example.com"),
        ("https://EXAMPLE.com/", "Example.com"),
    ],
)
def test_own_site_referrer_is_internal_navigation(referrer, hostname):
    enriched = enrich(referrer, hostname)
    assert enriched == {"channel": "Direct"}


def test_own_site_referrer_keeps_the_campaign():
    enriched = enrich("https://example.com/", utm_source="newsletter", utm_campaign="may")
    assert "referrer_host" not in enriched
    assert enriched["source"] == "newsletter"
    assert enriched["channel"] == "Email"


def test_subdomain_of_the_site_is_a_referrer():
    enriched = enrich("https://docs.example.com/start")
    assert enriched["referrer_host"] == "docs.example.com"
    assert enriched["channel"] == "Referral"


def test_referrer_host_drops_www_and_port():
    assert enrich("https://www.Example.org:8443/a?b=c")["referrer_host"] == "example.org"
    assert enrich("news.ycombinator.com/item?id=1")["referrer_host"] == "news.ycombinator.com"


@pytest.mark.parametrize(
    "referrer", ["http://[::1", "not a url", "https://", "javascript:void(0)", "about:blank"]
)
def test_malformed_referrers_are_direct(referrer):
    assert enrich(referrer) == {"channel": "Direct"}


def test_international_and_ip_referrers_are_hosts():
    assert enrich("https://www.münchen.de/")["referrer_host"] == "münchen.de"
    assert enrich("http://[2001:db8::1]:8080/")["referrer_host"] == "2001:db8::1"
    assert enrich("http://192.0.2.7/")["referrer_host"] == "192.0.2.7"


def test_utm_source_overrides_the_referrer():
    enriched = enrich("https://www.google.com/", utm_source="spring-mailing")
    assert enriched["source"] == "spring-mailing"
    assert enriched["referrer_host"] == "google.com"
    assert enriched["channel"] == "Referral"


@pytest.mark.parametrize("alias", ["ref", "source"])
def test_ref_and_source_are_aliases_of_utm_source(alias):
    enriched = enrich("https://news.ycombinator.com/", **{alias: "producthunt"})
    assert enriched["source"] == "producthunt"
    assert enriched["utm_source"] == "producthunt"


def test_utm_source_wins_over_its_aliases():
    assert enrich(utm_source="a", ref="b", source="c")["source"] == "a"


def test_known_utm_sources_are_canonicalised():
    assert enrich(utm_source="google")["source"] == "Google"
    assert enrich(utm_source="fb")["source"] == "Facebook"
    assert enrich(utm_source="hackernews")["source"] == "Hacker News"


def test_all_utm_fields_are_copied():
    enriched = enrich(
        utm_source="news",
        utm_medium="email",
        utm_campaign="launch",
        utm_term="analytics",
        utm_content="header-link",
    )
    assert enriched["utm_source"] == "news"
    assert enriched["utm_medium"] == "email"
    assert enriched["utm_campaign"] == "launch"
    assert enriched["utm_term"] == "analytics"
    assert enriched["utm_content"] == "header-link"


def test_query_parameter_names_are_case_insensitive():
    assert enrich(UTM_SOURCE="google", UTM_MEDIUM="CPC")["channel"] == "Paid Search"
    assert enrich(ScCid="x")["channel"] == "Paid Social"


def test_values_are_capped_at_200_characters():
    long_value = "x" * 500
    enriched = enrich(
        "https://" + "a" * 150 + "." + "b" * 150 + ".com/",
        utm_source=long_value,
        utm_campaign=long_value,
    )
    assert all(len(value) <= 200 for value in enriched.values())
    assert len(enriched["utm_campaign"]) == 200


def test_referrer_lookups_are_cached_per_host():
    assert referrers.classify_host.cache_info().maxsize == 8192
    enrich("https://cache-probe.example.net/one")
    hits = referrers.classify_host.cache_info().hits
    enrich("https://cache-probe.example.net/two")
    assert referrers.classify_host.cache_info().hits == hits + 1


@pytest.mark.parametrize(
    ("channel", "category"),
    [
        ("Direct", "direct"),
        ("Organic Search", "search"),
        ("Paid Search", "search"),
        ("Organic Social", "social"),
        ("Paid Social", "social"),
        ("Organic Video", "social"),
        ("Email", "referral"),
        ("Referral", "referral"),
        ("Paid Other", "referral"),
        ("Affiliates", "referral"),
        ("Display", "referral"),
        ("AI Assistants", "referral"),
        ("", "direct"),
    ],
)
def test_traffic_category(channel, category):
    assert referrers.traffic_category(channel) == category


def test_every_channel_has_a_seed_traffic_category():
    categories = {referrers.traffic_category(channel) for channel in referrers.CHANNELS}
    assert categories == {"direct", "referral", "search", "social"}
