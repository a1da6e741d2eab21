"""Security headers: a strict Content-Security-Policy and friends on every HTML page.

HTML responses get a CSP that allows only our own scripts, styles and connections (no inline
script, no third-party origin; htmx is vendored under ``/static``), ``frame-ancestors 'none'``
and ``X-Frame-Options: DENY`` (no clickjacking), ``Cache-Control: no-store`` (pages may show
private numbers). Every response through this middleware gets ``X-Content-Type-Options:
nosniff`` and ``Referrer-Policy: same-origin``; over TLS, ``Strict-Transport-Security``.

The middleware wraps our own routes and the schema pages, never the ingest endpoints: their
hot path stays untouched, and they answer JSON or nothing. The OpenAPI pages (Swagger UI)
load their script from a CDN and run an inline one, so they get a looser policy of their own.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SCHEMA_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://unpkg.com; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://unpkg.com; "
    "img-src 'self' data: https://cdn.jsdelivr.net; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; frame-ancestors 'none'"
)
_ALWAYS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000")


def _html_headers(policy: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
    ]


_PAGE = _html_headers(CONTENT_SECURITY_POLICY)
_SCHEMA_PAGE = _html_headers(SCHEMA_CONTENT_SECURITY_POLICY)


def page_headers(https: bool) -> dict[str, str]:
    """The headers of an HTML page, for answers the middleware does not wrap (an error page
    for a path no route matches is answered by the app itself, outside every router)."""
    headers = [*_ALWAYS, *_PAGE, (b"cache-control", b"no-store"), *([_HSTS] if https else [])]
    return {name.decode(): value.decode() for name, value in headers}


def security_headers(app: ASGIApp) -> ASGIApp:
    """ASGI middleware adding the headers above to each response of ``app``."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        schema = scope["path"].startswith("/schema")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                names = {name.lower() for name, _ in headers}
                content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
                extra = [header for header in _ALWAYS if header[0] not in names]
                if content_type.startswith(b"text/html"):
                    extra += [header for header in (_SCHEMA_PAGE if schema else _PAGE) if header[0] not in names]
                    if b"cache-control" not in names:
                        extra.append((b"cache-control", b"no-store"))
                if https and _HSTS[0] not in names:
                    extra.append(_HSTS)
                message = {**message, "headers": headers + extra}
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware
