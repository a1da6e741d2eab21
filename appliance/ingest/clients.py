"""Scripted HTTP clients: the user agents of HTTP libraries and command-line tools.

A browser never sends these. From an anonymous caller such a user agent marks a bot
(``plugins/bots.py`` drops the event); from a trusted server (an authenticated API caller)
it is the server's own user agent, not its visitor's, and the pipeline ignores it.
"""

from __future__ import annotations

import re
from functools import lru_cache

HTTP_LIBRARIES = (
    r"^curl/|^Wget|python-requests|python-urllib|python-httpx|aiohttp|Go-http-client|okhttp"
    r"|axios/|node-fetch|undici|libwww-perl|^Java/|Apache-HttpClient|Scrapy|HTTPie|^PostmanRuntime"
    r"|^Insomnia|^Dart/|^Ruby|^PHP|^Guzzle|^http\.rb"
)
_HTTP_LIBRARY = re.compile(HTTP_LIBRARIES, re.IGNORECASE)


@lru_cache(maxsize=1024)
def is_script_client(user_agent: str) -> bool:
    """Whether ``user_agent`` names an HTTP library or a command-line HTTP tool."""
    return _HTTP_LIBRARY.search(user_agent[:1024]) is not None
