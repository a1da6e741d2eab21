"""The bot filter: drops events whose user agent belongs to a crawler or a scripted client.

Three opinions are combined, any one of them is enough: the maintained pattern list of the
``crawler-user-agents`` package, ua-parser's device family ``"Spider"``, and a short list of
headless browsers, audit tools and HTTP libraries that real visitors never use. An empty user
agent is not a bot: server-side API events often carry none. The user agent is the
visitor's: ``metadata.user_agent`` of a server-side event when given, and never a trusted
server's own HTTP library (the pipeline leaves that out). Verdicts are cached per
user-agent string because this runs on the hot path of every request.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

import crawleruseragents
import ua_parser

from appliance import hookimpl
from appliance.ingest.clients import HTTP_LIBRARIES
from appliance.models import DropReason

if TYPE_CHECKING:
    from appliance.models import Event, RequestContext
    from appliance.runtime.appliance import Appliance

# Longer user agents are cut before classification and caching, so a hostile client cannot
# fill the cache with megabyte-long keys. Real user agents are a few hundred characters.
MAX_USER_AGENT_LENGTH = 1024

# Automation that the crawler list may not name (or names case-sensitively only).
# HTTP libraries and command-line tools are shared with the pipeline, which ignores them as
# a trusted server's own user agent (appliance/ingest/clients.py).
_AUTOMATION = re.compile(
    r"HeadlessChrome|PhantomJS|Lighthouse|PageSpeed|Puppeteer|Playwright|Selenium|WebDriver"
    r"|SlimerJS|Cypress|" + HTTP_LIBRARIES,
    re.IGNORECASE,
)


@lru_cache(maxsize=8192)
def is_bot(user_agent: str) -> bool:
    """Whether ``user_agent`` names a crawler, a headless browser or an HTTP library."""
    if not user_agent.strip():
        return False
    if crawleruseragents.is_crawler(user_agent) or _AUTOMATION.search(user_agent):
        return True
    device = ua_parser.parse_device(user_agent)
    return device is not None and device.family == "Spider"


@hookimpl
def filter_event(event: Event, context: RequestContext) -> str | None:
    if is_bot(context.user_agent[:MAX_USER_AGENT_LENGTH]):
        return DropReason.BOT
    return None


@hookimpl
def startup(appliance: Appliance) -> None:
    # Both libraries compile their patterns on first use (a few hundred milliseconds):
    # pay that here rather than in the first visitor's request.
    crawleruseragents.is_crawler("Mozilla/5.0")
    ua_parser.parse_device("Mozilla/5.0")
