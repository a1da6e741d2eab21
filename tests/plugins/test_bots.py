"""The bot filter against the crawler-user-agents sample user agents and real browsers."""

from __future__ import annotations

import crawleruseragents
import pytest

from appliance.models import DropReason, Event, EventKind, RequestContext
from plugins import bots

REAL_BROWSERS = {
    "chrome-windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "safari-iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "firefox-linux": "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "samsung-tablet": "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Safari/537.36",
    "edge-windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51",
    "safari-mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "chrome-android": "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "facebook-in-app": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/450.0.0.38.108;]",
    "cubot-phone": "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
}


def make_event() -> Event:
    return Event(
        kind=EventKind.PAGEVIEW, site_id=1, timestamp=0.0, name="pageview", hostname="example.com"
    )


def make_context(user_agent: str) -> RequestContext:
    return RequestContext(client_ip="203.0.113.9", user_agent=user_agent, received_at=0.0)


def crawler_samples() -> list[str]:
    return [
        instance
        for crawler in crawleruseragents.CRAWLER_USER_AGENTS_DATA
        for instance in crawler.get("instances", [])
    ]


def test_crawler_user_agents_samples_are_bots():
    samples = crawler_samples()
    assert len(samples) > 1000
    missed = [
        sample
        for sample in samples
        if bots.filter_event(make_event(), make_context(sample)) is None
    ]
    # The package's own sample user agents: at most 5 % may slip through (none do today).
    assert len(missed) / len(samples) <= 0.05, missed[:20]


@pytest.mark.parametrize("name", sorted(REAL_BROWSERS))
def test_real_browsers_are_not_bots(name):
    assert bots.filter_event(make_event(), make_context(REAL_BROWSERS[name])) is None


def test_generated_browser_user_agents_are_not_bots():
    faker = pytest.importorskip("faker")
    generator = faker.Faker()
    generator.seed_instance(20240729)
    samples = [generator.user_agent() for _ in range(1000)]
    flagged = [sample for sample in samples if bots.is_bot(sample)]
    assert flagged == []


@pytest.mark.parametrize(
    "user_agent",
    [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/122.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Lighthouse",
        "curl/8.5.0",
        "Wget/1.21.4",
        "wget/1.21",
        "python-requests/2.32.3",
        "Python-urllib/3.11",
        "python-httpx/0.27.0",
        "Go-http-client/2.0",
        "okhttp/4.12.0",
        "axios/1.7.2",
        "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
        "Java/17.0.2",
        "Scrapy/2.11.2 (+https://scrapy.org)",
        "PostmanRuntime/7.39.0",
    ],
)
def test_crawlers_headless_browsers_and_http_libraries_are_bots(user_agent):
    assert bots.filter_event(make_event(), make_context(user_agent)) == DropReason.BOT == "bot"


@pytest.mark.parametrize("user_agent", ["", "   "])
def test_missing_user_agent_is_not_a_bot(user_agent):
    # Server-side API events often come without a user agent.
    assert bots.filter_event(make_event(), make_context(user_agent)) is None


def test_verdicts_are_cached_per_user_agent():
    assert bots.is_bot.cache_info().maxsize == 8192
    user_agent = REAL_BROWSERS["firefox-linux"] + " cache-probe"
    bots.filter_event(make_event(), make_context(user_agent))
    hits = bots.is_bot.cache_info().hits
    bots.filter_event(make_event(), make_context(user_agent))
    assert bots.is_bot.cache_info().hits == hits + 1


def test_huge_user_agent_is_cut_before_caching():
    # Only the first MAX_USER_AGENT_LENGTH characters are classified (and kept as cache key).
    user_agent = "Mozilla/5.0 " + "x" * 100_000 + " Googlebot/2.1"
    assert bots.filter_event(make_event(), make_context(user_agent)) is None
    assert bots.filter_event(make_event(), make_context("Googlebot/2.1 " + "x" * 100_000)) == "bot"
