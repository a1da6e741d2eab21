"""One JSON error shape for every API failure: ``{"status": "error", "error": {field, message}}``,
and a page for a browser.

A browser navigating to a dashboard page (``Accept`` names ``text/html``, the path is not
under ``/api/``, and it is not an htmx request) gets the same status as a styled HTML page
with a short message and a link home (``error.html``); every other caller — the API, htmx,
scripts, ``curl`` — gets the JSON body. An htmx-boosted link (a GET) that fails is sent to
the same URL as a full navigation (``HX-Redirect``), so the browser shows the error page
instead of silently staying where it was.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.response import Template

from appliance.errors import DomainError, QueryTimeout, StorageFullError
from appliance.operations.logs import request_id
from web.auth import principal_of
from web.security import page_headers


class ErrorDetail(msgspec.Struct):
    """What was wrong: the field (a dotted path, ``$`` for the whole body, null when no one
    field is to blame) and a message for people."""

    field: str | None
    message: str


class ErrorBody(msgspec.Struct):
    """Every error answer of the API and of ingest: ``{"status": "error", "error": {...}}``
    (documented in the OpenAPI schema; :func:`error_body` builds it)."""

    status: Literal["error"]
    error: ErrorDetail


def error_body(field: str | None, message: str, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"field": field, "message": message}
    error.update(extra)
    return {"status": "error", "error": error}


def error_bytes(status: int, field: str | None, message: str) -> bytes:
    return msgspec.json.encode(error_body(field, message))


def field_from_msgspec(error: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec says "Expected `int`, got `str` - at `$.metadata.amount`": split it."""
    text = str(error)
    message, _, path = text.partition(" - at `")
    field = path.rstrip("`").removeprefix("$.").removeprefix("$") or None
    if field is None and "Object missing required field" in message:
        field = message.rsplit("`", 2)[-2] if message.count("`") >= 2 else None
    elif field and "Object missing required field" in message:
        field = f"{field}.{message.rsplit('`', 2)[-2]}"
    return field or "$", message


# What a person is told on an error page, by status (the technical detail follows it).
PAGE_TEXT = {
    401: ("Log in first", "This page needs you to be logged in."),
    403: ("No access", "Your account, or this link, does not open this page."),
    404: ("Page not found", "There is no page at this address. It may have moved, or the site may have been deleted."),
    405: ("Not allowed", "This address does not answer that kind of request."),
    500: ("Something went wrong", "Footfall hit an unexpected error; it has been logged. Please try again."),
    503: ("Unavailable", "Footfall cannot store or read data right now. Please try again in a minute."),
}
GENERIC_DETAILS = {phrase.phrase for phrase in HTTPStatus} | {"Internal Server Error"}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def wants_page(request: Request) -> bool:
    """Whether the caller is a browser navigating to a page (HTML), not an API client (JSON)."""
    path = request.scope.get("path", "")
    if path == "/api" or path.startswith("/api/"):
        return False
    if request.headers.get("hx-request") == "true":
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "application/xhtml+xml" in accept


def _boosted_get(request: Request) -> bool:
    return (request.headers.get("hx-request") == "true" and request.headers.get("hx-boosted") == "true"
            and request.method == "GET" and not request.scope.get("path", "").startswith("/api/"))


def error_page(request: Request, status: int, detail: str = "", headers: dict[str, str] | None = None) -> Response:
    """The styled error page: the status, a short message, the detail when it says more, a link home."""
    title, message = PAGE_TEXT.get(status, (_phrase(status), "The request could not be answered."))
    if status >= 500 or detail in GENERIC_DETAILS:
        detail = ""  # never a server's internals; nothing the title does not already say
    principal = principal_of(request)
    signed_in = principal is not None and principal.user is not None
    return Template(
        template_name="error.html",
        context={"status": status, "title": title, "message": message, "detail": detail, "signed_in": signed_in},
        status_code=status,
        headers={**(headers or {}), **page_headers(request.url.scheme == "https")},
        media_type=MediaType.HTML,
    )


def error_answer(request: Request, status: int, field: str | None, message: str,
                 headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> Response:
    """The error for this caller: a page for a browser, the JSON body for everyone else."""
    if wants_page(request):
        return error_page(request, status, message, headers)
    headers = dict(headers or {})
    if _boosted_get(request):
        headers["HX-Redirect"] = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Response(body if body is not None else error_body(field, message), status_code=status,
                    headers=headers, media_type=MediaType.JSON)


def _handle_domain_error(request: Request, exc: DomainError) -> Response:
    retry = exc.retry_after if isinstance(exc, QueryTimeout) else None  # still computing: ask again
    return error_answer(request, exc.status, exc.field, exc.message,
                        headers={"Retry-After": str(retry)} if retry else None)


def _handle_validation(request: Request, exc: ValidationException) -> Response:
    field, message = None, str(exc.detail)
    extra = exc.extra if isinstance(exc.extra, list) else []
    if extra and isinstance(extra[0], dict):
        field = extra[0].get("key")
        message = extra[0].get("message", message)
    return error_answer(request, 400, field, message)


def _handle_http(request: Request, exc: HTTPException) -> Response:
    return error_answer(request, exc.status_code, None, str(exc.detail), headers=dict(exc.headers or {}))


def _handle_storage_full(request: Request, exc: StorageFullError) -> Response:
    return error_answer(request, 503, None, f"storage unavailable: {exc}", headers={"Retry-After": "60"})


def _handle_unexpected(request: Request, exc: Exception) -> Response:
    """Any other exception (a bug): a 500 page for a browser; for everyone else our error
    body with the request id, which names the logged traceback (``web.app``'s
    ``after_exception`` hook logs it either way)."""
    if isinstance(exc, HTTPException):  # an HTTPException raised with status 500
        return _handle_http(request, exc)
    return error_answer(request, 500, None, "Internal Server Error",
                        body=error_body(None, "Internal Server Error", request_id=request_id.get() or None))


EXCEPTION_HANDLERS = {
    DomainError: _handle_domain_error,  # every domain error: filters, queries, sites, accounts, definitions, input
    ValidationException: _handle_validation,
    HTTPException: _handle_http,
    StorageFullError: _handle_storage_full,
    500: _handle_unexpected,  # every exception no handler above claims
}
