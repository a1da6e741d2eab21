"""One JSON error shape for every API failure: ``{"status": "error", "error": {field, message}}``."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from appliance.errors import DomainError, StorageFullError


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


def _handle_domain_error(request: Request, exc: DomainError) -> Response:
    return Response(error_body(exc.field, exc.message), status_code=exc.status, media_type=MediaType.JSON)


def _handle_validation(request: Request, exc: ValidationException) -> Response:
    field, message = None, str(exc.detail)
    extra = exc.extra if isinstance(exc.extra, list) else []
    if extra and isinstance(extra[0], dict):
        field = extra[0].get("key")
        message = extra[0].get("message", message)
    return Response(error_body(field, message), status_code=400, media_type=MediaType.JSON)


def _handle_http(request: Request, exc: HTTPException) -> Response:
    headers = dict(exc.headers or {})
    return Response(
        error_body(None, str(exc.detail)), status_code=exc.status_code, headers=headers, media_type=MediaType.JSON
    )


def _handle_storage_full(request: Request, exc: StorageFullError) -> Response:
    return Response(
        error_body(None, f"storage unavailable: {exc}"),
        status_code=503,
        headers={"Retry-After": "60"},
        media_type=MediaType.JSON,
    )


EXCEPTION_HANDLERS = {
    DomainError: _handle_domain_error,  # every domain error: filters, queries, sites, accounts, definitions, input
    ValidationException: _handle_validation,
    HTTPException: _handle_http,
    StorageFullError: _handle_storage_full,
}
