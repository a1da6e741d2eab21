"""The ASGI plumbing every ingest endpoint shares: reading a bounded body, answering, and the
request headers the pipeline needs.

The ingest endpoints (:mod:`web.ingest` for Footfall's own bodies, :mod:`web.ingest_compat`
for Plausible's and Umami's) are lean ASGI handlers rather than Litestar controllers, so they
read and answer the raw ASGI messages themselves with these helpers.
"""

from __future__ import annotations

from appliance.models import PrivacySignals

CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type"),
    (b"access-control-max-age", b"86400"),
]
JSON_HEADERS = [(b"content-type", b"application/json"), *CORS_HEADERS]


class TooLarge(Exception):
    pass


async def read_body(receive, limit: int) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(send, status: int, body: bytes = b"", headers: list | None = None) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": headers or JSON_HEADERS}
    )
    await send({"type": "http.response.body", "body": body})


def user_agent_and_authorization(scope) -> tuple[str, bytes, PrivacySignals]:
    """The User-Agent, the Authorization header, and the visitor's privacy signals
    (``Sec-GPC: 1``, ``DNT: 1``), in one pass over the headers."""
    agent, authorization = "", b""
    gpc = dnt = False
    for name, value in scope["headers"]:
        if name == b"user-agent":
            agent = value.decode("latin-1")[:512]
        elif name == b"authorization":
            authorization = value
        elif name == b"sec-gpc":
            gpc = value.strip() == b"1"
        elif name == b"dnt":
            dnt = value.strip() == b"1"
    return agent, authorization, PrivacySignals(gpc=gpc, dnt=dnt)
