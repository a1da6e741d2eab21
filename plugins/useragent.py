"""User-agent parsing: browser, operating system, their major versions and the device class.

Built on ua-parser with the compiled rules of ``ua-parser-builtins``; ua-parser picks its
fastest installed resolver itself (the Rust one when ``ua-parser-rs`` is installed). Names
are normalised the way Plausible shows them ("Chrome Mobile" is "Chrome", "Mac OS X" is
"macOS") and the device is one of "Desktop", "Mobile" or "Tablet". Values the event already
carries (from the seed API's metadata) are kept: this plugin only fills empty fields.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import ua_parser

from appliance import hookimpl

if TYPE_CHECKING:
    from appliance.models import Event, RequestContext
    from appliance.runtime.appliance import Appliance

MAX_USER_AGENT_LENGTH = 1024

DESKTOP = "Desktop"
MOBILE = "Mobile"
TABLET = "Tablet"

BROWSER_NAMES = {
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome Webview",
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "Safari",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Opera Mobile": "Opera",
    "Other": "",
}
OS_NAMES = {
    "Mac OS X": "macOS",
    "Chrome OS": "ChromeOS",
    "Other": "",
}
_MOBILE_SYSTEMS = frozenset({"iOS", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS"})
_TABLET_MARKERS = ("iPad", "Tablet", "Kindle", "Silk/", "PlayBook", "Nexus 7", "Nexus 10")


class UserAgentFields(NamedTuple):
    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str


def _device_class(user_agent: str, os_family: str, device_family: str, device_brand: str) -> str:
    if device_family in ("iPad", "Kindle") or device_brand == "Generic_Android_Tablet":
        return TABLET
    if any(marker in user_agent for marker in _TABLET_MARKERS):
        return TABLET
    if os_family == "Android":
        # Chrome on Android tablets leaves "Mobile" out of the user agent; phones send it.
        return MOBILE if "Mobile" in user_agent else TABLET
    if device_family in ("iPhone", "iPod") or os_family in _MOBILE_SYSTEMS or "Mobi" in user_agent:
        return MOBILE
    return DESKTOP


def _os_version(os_family: str, major: str | None, minor: str | None) -> str:
    if not major:
        return ""
    # Every macOS since 2020 still reports "10.15": its minor is the only useful part.
    if os_family == "Mac OS X" and major == "10" and minor:
        return f"{major}.{minor}"
    return major


@lru_cache(maxsize=8192)
def describe(user_agent: str) -> UserAgentFields:
    """Browser, browser major version, OS, OS version and device class of ``user_agent``."""
    result = ua_parser.parse(user_agent)
    browser = result.user_agent
    system = result.os
    device = result.device
    os_family = system.family if system else ""
    return UserAgentFields(
        browser=BROWSER_NAMES.get(browser.family, browser.family) if browser else "",
        browser_version=(browser.major or "") if browser else "",
        os=OS_NAMES.get(os_family, os_family),
        os_version=_os_version(os_family, system.major, system.minor) if system else "",
        device=_device_class(
            user_agent,
            os_family,
            device.family if device else "",
            (device.brand or "") if device else "",
        ),
    )


@hookimpl
def enrich_event(event: Event, context: RequestContext) -> dict[str, Any] | None:
    user_agent = context.user_agent[:MAX_USER_AGENT_LENGTH]
    if not user_agent.strip():
        return None
    browser, browser_version, os_name, os_version, device = describe(user_agent)
    # A browser or device named by the sender (seed API metadata) wins over the parsed one,
    # and a parsed version is only added to the name it belongs to. (Field by field, in
    # UserAgentFields' order: no dict of the parsed fields per event.)
    filled = {}
    if browser and not event.browser:
        filled["browser"] = browser
    if browser_version and not event.browser_version and (not event.browser or event.browser == browser):
        filled["browser_version"] = browser_version
    if os_name and not event.os:
        filled["os"] = os_name
    if os_version and not event.os_version and (not event.os or event.os == os_name):
        filled["os_version"] = os_version
    if device and not event.device:
        filled["device"] = device
    return filled or None


@hookimpl
def startup(appliance: Appliance) -> None:
    # Loading and compiling the rules takes a few hundred milliseconds on first use.
    ua_parser.parse("Mozilla/5.0")
