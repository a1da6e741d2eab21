"""Referrers and channels: where a visit came from, and which GA4-style channel that is.

The referrer host is named from the maintained database of the ``referer-parser`` package
("Google", "Hacker News", "Gmail"), completed by a short table of sources it predates (AI
assistants, video sites, newer social networks and search engines). Campaign parameters of
the tracked page (``utm_*``, with ``ref`` and ``source`` as aliases of ``utm_source``, and the
ad networks' click ids) override the referrer, as in Plausible. A referrer on the tracked
site itself is internal navigation, not a source. The channel is one of
:data:`appliance.channels.CHANNELS`; :func:`traffic_category` (re-exported from there) folds
it into the seed API's four traffic-source categories.
"""

from __future__ import annotations

import functools
import json
import re
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import referer_parser
from referer_parser import Referer

from appliance import hookimpl

# The channel vocabulary and its seed categories live in the domain, where stats use them;
# re-exported so a plugin author finds them next to the rules that produce them.
from appliance.channels import CHANNELS as CHANNELS
from appliance.channels import traffic_category as traffic_category

if TYPE_CHECKING:
    from appliance.models import Event, RequestContext
    from appliance.runtime.appliance import Appliance

MAX_VALUE_LENGTH = 200

DIRECT = "Direct"
ORGANIC_SEARCH = "Organic Search"
ORGANIC_SOCIAL = "Organic Social"
ORGANIC_VIDEO = "Organic Video"
EMAIL = "Email"
REFERRAL = "Referral"
PAID_SEARCH = "Paid Search"
PAID_SOCIAL = "Paid Social"
PAID_OTHER = "Paid Other"
AFFILIATES = "Affiliates"
DISPLAY = "Display"
AI_ASSISTANTS = "AI Assistants"

# Source categories (the ``medium`` field): the referer-parser media plus two of our own.
SEARCH = "search"
SOCIAL = "social"
VIDEO = "video"
MAIL = "email"
AI = "ai"
OTHER = "referral"

# Matched on the host and each parent domain, before the referer-parser database.
EXTRA_SOURCES: dict[str, tuple[str, str]] = {
    "chatgpt.com": ("ChatGPT", AI),
    "chat.openai.com": ("ChatGPT", AI),
    "perplexity.ai": ("Perplexity", AI),
    "claude.ai": ("Claude", AI),
    "gemini.google.com": ("Gemini", AI),
    "bard.google.com": ("Gemini", AI),
    "copilot.microsoft.com": ("Copilot", AI),
    "you.com": ("You.com", AI),
    "phind.com": ("Phind", AI),
    "chat.deepseek.com": ("DeepSeek", AI),
    "youtube.com": ("YouTube", VIDEO),
    "youtu.be": ("YouTube", VIDEO),
    "vimeo.com": ("Vimeo", VIDEO),
    "twitch.tv": ("Twitch", VIDEO),
    "tiktok.com": ("TikTok", VIDEO),
    "dailymotion.com": ("Dailymotion", VIDEO),
    "x.com": ("Twitter", SOCIAL),
    "bsky.app": ("Bluesky", SOCIAL),
    "threads.net": ("Threads", SOCIAL),
    "threads.com": ("Threads", SOCIAL),
    "mastodon.social": ("Mastodon", SOCIAL),
    "discord.com": ("Discord", SOCIAL),
    "t.me": ("Telegram", SOCIAL),
    "web.telegram.org": ("Telegram", SOCIAL),
    "web.whatsapp.com": ("WhatsApp", SOCIAL),
    "wa.me": ("WhatsApp", SOCIAL),
    "snapchat.com": ("Snapchat", SOCIAL),
    "search.brave.com": ("Brave", SEARCH),
    "kagi.com": ("Kagi", SEARCH),
    "startpage.com": ("Startpage", SEARCH),
    "qwant.com": ("Qwant", SEARCH),
    "outlook.live.com": ("Outlook.com", MAIL),
    "outlook.office.com": ("Outlook", MAIL),
    "outlook.office365.com": ("Outlook", MAIL),
    "mail.proton.me": ("Proton Mail", MAIL),
    # Android apps send android-app://<package>/ as the referrer.
    "com.google.android.googlequicksearchbox": ("Google", SEARCH),
    "com.google.android.gm": ("Gmail", MAIL),
}
# Short utm_source spellings in common use.
SOURCE_ALIASES: dict[str, tuple[str, str]] = {
    "fb": ("Facebook", SOCIAL),
    "ig": ("Instagram", SOCIAL),
    "yt": ("YouTube", VIDEO),
    "x": ("Twitter", SOCIAL),
    "tw": ("Twitter", SOCIAL),
    "hn": ("Hacker News", SOCIAL),
}
_DATABASE_MEDIA = {SEARCH: 3, SOCIAL: 2, MAIL: 1}  # a name in several media: highest wins

# Click ids the ad networks append to landing-page URLs, and the source each implies.
SEARCH_CLICK_IDS = {"gclid": "Google", "gbraid": "Google", "wbraid": "Google", "msclkid": "Bing"}
SOCIAL_CLICK_IDS = {
    "ttclid": "TikTok",
    "twclid": "Twitter",
    "li_fat_id": "LinkedIn",
    "sccid": "Snapchat",
    "epik": "Pinterest",
    "rdt_cid": "Reddit",
}
# fbclid is added to every outbound Facebook link, paid or not: it only names the source.
ORGANIC_CLICK_IDS = {"fbclid": "Facebook"}
DISPLAY_CLICK_IDS = {"dclid": "Google"}
CLICK_ID_SOURCES = {
    **SEARCH_CLICK_IDS,
    **SOCIAL_CLICK_IDS,
    **ORGANIC_CLICK_IDS,
    **DISPLAY_CLICK_IDS,
}
_CLICK_IDS = frozenset(CLICK_ID_SOURCES)

# GA4's default channel group definitions, on the lower-cased utm_medium.
_PAID_MEDIUM = re.compile(r".*cp.*|ppc|retargeting|paid.*")
_DISPLAY_MEDIA = frozenset({"display", "banner", "expandable", "interstitial", "cpm"})
_SOCIAL_MEDIA = frozenset(
    {"social", "social-network", "social-media", "sm", "social network", "social media"}
)
_EMAIL_WORDS = frozenset({"email", "e-mail", "e_mail", "e mail", "newsletter"})
_AFFILIATE_MEDIA = frozenset({"affiliate", "affiliates"})

# A dotted domain name (IDNs included) or an IPv6 address: what a referrer host can be.
_HOST = re.compile(r"[\w-]+(?:\.[\w-]+)+|[0-9a-f:.]*:[0-9a-f:.]*")


def _without_www(host: str) -> str:
    return host.removeprefix("www.")


def hostname(url: str) -> str:
    """The lower-case host of a URL (or of a bare "host/path"), or "" if it has none."""
    url = url.strip()
    if not url:
        return ""
    if "://" not in url:
        url = "https://" + url
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""
    if not _HOST.fullmatch(host):
        return ""  # "javascript:void(0)", "not a url", an intranet name
    return host[:MAX_VALUE_LENGTH]


@lru_cache(maxsize=8192)
def classify_host(host: str) -> tuple[str, str]:
    """(source name, category) of a referrer host; both "" when the host is not in the
    database, the category "" when it is known by name only (``support.google.com``).

    Cached by host: a path-specific database entry (``orange.fr/webmail``) is not used."""
    candidate = host
    while True:
        if candidate in EXTRA_SOURCES:
            return EXTRA_SOURCES[candidate]
        _, dot, parent = candidate.partition(".")
        if not dot or "." not in parent:
            break
        candidate = parent
    referer = Referer(f"https://{host}/")
    if not referer.referer:
        return "", ""
    category = referer.medium if referer.medium in _DATABASE_MEDIA else ""
    return referer.referer, category


def _compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@cache
def _source_names() -> dict[str, tuple[str, str]]:
    """Known source names (compacted: "hackernews", "yahoo") to (name, category)."""
    with open(referer_parser.JSON_FILE, encoding="utf-8") as database:
        media = json.load(database)
    names: dict[str, tuple[str, str]] = {}
    # Read from the lowest-ranked medium up, so a name listed twice ("Mail.ru" is a search
    # engine and a social network) ends up with its highest-ranked medium.
    for medium in sorted(media, key=lambda medium: _DATABASE_MEDIA.get(medium, 0)):
        category = medium if medium in _DATABASE_MEDIA else ""
        for name in media[medium]:
            names[_compact(name)] = (name, category)
    for name, category in EXTRA_SOURCES.values():
        names[_compact(name)] = (name, category)
    names.update(SOURCE_ALIASES)
    return names


def resolve_source(value: str) -> tuple[str, str]:
    """(source name, category) for a ``utm_source`` value: a known name, domain or alias is
    canonicalised ("google" is "Google", "chatgpt.com" is "ChatGPT"), anything else is kept."""
    if "." in value and " " not in value:
        name, category = classify_host(hostname(value))
        if name:
            return name, category
    return _source_names().get(_compact(value), (value, ""))


def channel_for(
    source: str, category: str, medium: str, click_ids: frozenset[str], *, tagged: bool = False
) -> str:
    """The channel of a visit from its source, the source's category, utm_medium and the ad
    click ids on the landing page; ``tagged`` says the page carried any utm parameter."""
    medium = medium.lower()
    paid = bool(_PAID_MEDIUM.fullmatch(medium))
    if not click_ids.isdisjoint(SEARCH_CLICK_IDS) or (paid and category == SEARCH):
        return PAID_SEARCH
    if not click_ids.isdisjoint(SOCIAL_CLICK_IDS) or (
        paid and (category in (SOCIAL, VIDEO) or "fbclid" in click_ids)
    ):
        return PAID_SOCIAL
    if medium in _DISPLAY_MEDIA or not click_ids.isdisjoint(DISPLAY_CLICK_IDS):
        return DISPLAY
    if paid:
        return PAID_OTHER
    if category == AI:
        return AI_ASSISTANTS
    if category == SOCIAL or medium in _SOCIAL_MEDIA:
        return ORGANIC_SOCIAL
    if category == VIDEO or "video" in medium:
        return ORGANIC_VIDEO
    if category == SEARCH or medium == "organic":
        return ORGANIC_SEARCH
    if category == MAIL or medium in _EMAIL_WORDS or source.lower() in _EMAIL_WORDS:
        return EMAIL
    if medium in _AFFILIATE_MEDIA:
        return AFFILIATES
    # GA4 calls a tagged visit it cannot place "Unassigned"; it is not direct traffic.
    if source or medium or tagged:
        return REFERRAL
    return DIRECT


def _parameter(query: dict[str, str], *names: str) -> str:
    for name in names:
        value = query.get(name, "").strip()
        if value:
            return value[:MAX_VALUE_LENGTH]
    return ""


_QUERY_NAMES = frozenset(
    {"utm_source", "source", "ref", "utm_medium", "utm_campaign", "utm_term", "utm_content"}
)


@hookimpl
def enrich_event(event: Event, context: RequestContext) -> dict[str, Any] | None:
    relevant: tuple[tuple[str, str], ...] = ()
    if context.page_query:
        relevant = tuple(
            sorted(
                (key.lower(), value)
                for key, value in context.page_query.items()
                if key.lower() in _QUERY_NAMES or key.lower() in _CLICK_IDS
            )
        )
    return _classify(event.referrer, event.hostname.lower(), relevant)


@functools.lru_cache(maxsize=16384)
def _classify(
    referrer: str, page_host: str, relevant: tuple[tuple[str, str], ...]
) -> dict[str, Any] | None:
    """Everything ``enrich_event`` derives, cached: referrers and tags repeat a lot."""
    query = dict(relevant)
    utm = {
        "utm_source": _parameter(query, "utm_source", "source", "ref"),
        "utm_medium": _parameter(query, "utm_medium"),
        "utm_campaign": _parameter(query, "utm_campaign"),
        "utm_term": _parameter(query, "utm_term"),
        "utm_content": _parameter(query, "utm_content"),
    }
    full_host = hostname(referrer)
    host = _without_www(full_host)
    if host and host == _without_www(page_host):
        host = full_host = ""  # navigation inside the tracked site
    source = category = ""
    if utm["utm_source"]:
        source, category = resolve_source(utm["utm_source"])
    elif host:
        # The database names some sites only with their "www.": look up the full host.
        source, category = classify_host(full_host)
        source = source or host
    click_ids = _CLICK_IDS.intersection(query)
    if not source and click_ids:
        # Without a referrer (in-app browsers drop it), the click id still names the network.
        key = next(key for key in CLICK_ID_SOURCES if key in click_ids)
        source, category = resolve_source(CLICK_ID_SOURCES[key])
    channel = channel_for(source, category, utm["utm_medium"], click_ids, tagged=any(utm.values()))
    fields = {
        "referrer_host": host,
        "source": source[:MAX_VALUE_LENGTH],
        "medium": category or (OTHER if source else ""),
        "channel": channel,
        **utm,
    }
    return {name: value for name, value in fields.items() if value}


@hookimpl
def startup(appliance: Appliance) -> None:
    _source_names()  # reads the referrer database's names once, off the request path
