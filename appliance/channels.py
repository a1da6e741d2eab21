"""The channel vocabulary (GA4-style groups) and the seed's four traffic-source categories."""

from __future__ import annotations

CHANNELS: tuple[str, ...] = (
    "Direct",
    "Organic Search",
    "Organic Social",
    "Organic Video",
    "Email",
    "Referral",
    "Paid Search",
    "Paid Social",
    "Paid Other",
    "Affiliates",
    "Display",
    "AI Assistants",
)

SEED_CATEGORIES: tuple[str, ...] = ("direct", "referral", "search", "social")

_CATEGORY = {
    "Direct": "direct",
    "": "direct",
    "Organic Search": "search",
    "Paid Search": "search",
    "Organic Social": "social",
    "Paid Social": "social",
    "Organic Video": "social",
}


def traffic_category(channel: str) -> str:
    """Map a channel to the seed's ``traffic_sources`` keys: direct, referral, search, social."""
    return _CATEGORY.get(channel, "referral")
