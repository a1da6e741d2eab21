"""A privacy notice per site, generated from what Footfall actually stores and the site's settings.

Site owners paste it into their own privacy policy. It says what is collected (and in what
form), what is not, how long it is kept (the site's retention), the legal basis Footfall is
designed for, whether Global Privacy Control and Do-Not-Track are honoured (the site's
settings), and how a person whose ``user_id`` the site sends can have their events exported
or erased (:mod:`appliance.operations.erasure`). Countries appear only while the geo plugin
is loaded. It is a draft for the owner's own policy, not legal advice, and says so.
"""

from __future__ import annotations

import msgspec

from appliance.models import Site


class NoticeSection(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    paragraphs: list[str]
    items: list[str] = []  # a bulleted list after the paragraphs


class PrivacyNotice(msgspec.Struct, frozen=True, kw_only=True):
    """The notice as sections (for the page and JSON) and as plain Markdown (to paste)."""

    site: str
    sections: list[NoticeSection]
    markdown: str


def privacy_notice(site: Site, *, geo: bool, operator: str = "") -> PrivacyNotice:
    """The notice for ``site``; ``geo``: whether country lookup runs (the geo plugin)."""
    who = operator or site.name or site.domain
    collected = [
        "the address of the page viewed (host and path) and the referring page, with campaign "
        "tags (utm_source, utm_medium, utm_campaign, utm_term, utm_content) taken from the URL;",
        "the browser and operating system with their major versions and the device type, "
        "derived from the browser's User-Agent header, which itself is not stored;",
        "the screen width class, the browser's language and time zone;",
        "custom events and conversions the site sends (their names, properties and amounts), "
        "and time spent and scroll depth on a page;",
    ]
    if geo:
        collected.append(
            "the country and region, looked up from the IP address at the moment of the visit; the "
            "address itself is never stored;"
        )
    collected.append(
        "a visitor identifier: a keyed hash of the IP address and User-Agent with a secret salt "
        "that changes every day and is then destroyed, so the same person cannot be recognised on "
        "another day or on another site."
    )
    signals = []
    signals.append(
        "Browsers that send the Global Privacy Control signal are not counted."
        if site.honour_gpc
        else "The Global Privacy Control signal is not used to exclude visits."
    )
    signals.append(
        "Browsers that send Do-Not-Track are not counted."
        if site.honour_dnt
        else "The Do-Not-Track signal is not used to exclude visits."
    )
    sections = [
        NoticeSection(
            title="Web analytics",
            paragraphs=[
                f"{who} measures the use of {site.domain} with Footfall, a self-hosted analytics "
                "application. The data stays on our own server and is not shared with any third party "
                "or used for advertising.",
            ],
        ),
        NoticeSection(title="What is collected", paragraphs=["For each page view or event:"], items=collected),
        NoticeSection(
            title="What is not collected",
            paragraphs=[
                "No cookies are set and nothing is stored in your browser (unless the site enables the "
                "optional new-versus-returning marker, a single first-party local-storage flag).",
                "No IP address, no raw User-Agent string and no raw account identifier is ever written "
                "to disk. There is no fingerprinting across days and no tracking across sites.",
            ],
        ),
        NoticeSection(title="Your privacy signals", paragraphs=signals),
        NoticeSection(
            title="Retention",
            paragraphs=[
                f"Individual events are kept for {site.retention_days} days and then deleted; the "
                "daily visitor salt is destroyed after two days.",
            ],
        ),
        NoticeSection(
            title="Legal basis",
            paragraphs=[
                "Our legitimate interest in understanding how our website is used (GDPR Article "
                "6(1)(f)), with data that does not identify you and without accessing your device. "
                "Under the CCPA this data is not sold or shared.",
            ],
        ),
        NoticeSection(
            title="Your rights",
            paragraphs=[
                "If you have an account with us and we record your visits under your account (a "
                "hashed account identifier), you may ask for a copy of those events or for their "
                "erasure; we can find and remove them completely. Anonymous visits cannot be linked "
                "to you, so there is nothing we could find for them.",
                "(Generated by Footfall from this site's settings. Review it for your own policy; it "
                "is not legal advice.)",
            ],
        ),
    ]
    lines = [f"# Privacy notice: web analytics on {site.domain}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        if section.items:
            lines += [*(f"- {item}" for item in section.items), ""]
    return PrivacyNotice(site=site.domain, sections=sections, markdown="\n".join(lines).rstrip() + "\n")
