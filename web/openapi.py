"""The OpenAPI document tells the truth: which answers each route can give, who may call it,
and what the ingest endpoints take.

- Errors: every error answer is :class:`~web.errors.ErrorBody` (what :mod:`web.errors` and
  the ingest handlers send), never Litestar's default ``{status_code, detail}``.
- Each route's error codes are derived from its :class:`~web.auth.Guard` (401 without or
  with a bad credential, 403 without the permission, 404/422 when it names a site) and from
  what it takes (400 for parameters and bodies, 404 for ids in the path, 409/422/503 for
  changes): :func:`error_responses` builds the ``responses=`` dict, and
  :func:`document_answers` gives it to every handler of the JSON API controllers, so a new
  route cannot be documented with fewer answers than its guard gives.
- Security per route: bearer for guarded routes; a site's stats also take a shared link's
  ``?auth=`` token, or nothing on a public site; public routes have ``security: []``.
- The ingest endpoints (raw ASGI, invisible to Litestar's generator) are described with
  their body Structs (one object, or an array of them).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import (
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)

from appliance.accounts.permissions import Permission
from appliance.models import CollectBody, ConversionBody, EventBody
from web.auth import Guard
from web.errors import ErrorBody
from web.openapi_compat import document_compat_ingest

BEARER = "bearer"
SHARED_LINK = "shared_link"
SECURITY_SCHEMES = {
    BEARER: SecurityScheme(
        type="http", scheme="bearer",
        description="A login token (ff_, from /api/v1/authenticate), an API key (ffk_) or a shared link (ffs_)",
    ),
    SHARED_LINK: SecurityScheme(
        type="apiKey", name="auth", security_scheme_in="query",
        description="A shared link's token (ffs_): read-only, one site's stats",
    ),
}
ANSWERS = {
    400: "Malformed request: a parameter or body field has the wrong type or is missing",
    401: "No credential, or one that is invalid, expired or revoked",
    403: "The credential lacks the permission, is read-only, or may not reach this site",
    404: "Unknown site, or no such record",
    409: "Conflicts with what exists (a duplicate, or the last admin)",
    410: "No longer kept (a standby's cursor older than the replication journal)",
    413: "Body too large, or too many items in a batch",
    422: "A value is not acceptable (the field is named)",
    429: "Too many requests: retry after the Retry-After header's seconds",
    503: ("Storage is full or unavailable, or a query ran past its time budget (a filtered report goes on "
          "computing into the kept answers: retry after the Retry-After header's seconds): retry later"),
}
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOT_PARAMETERS = frozenset({"self", "request", "form", "appliance"})  # "stats_query" takes parameters


def error_responses(*codes: int) -> dict[int, ResponseSpec]:
    """``responses=`` entries answering ``codes`` with the one error body."""
    return {
        code: ResponseSpec(data_container=ErrorBody, description=ANSWERS[code], generate_examples=False)
        for code in sorted(codes)
    }


def guard_codes(guard: Guard | None) -> set[int]:
    """The error codes a guard itself answers with."""
    if guard is None:
        return set()
    codes = {401, 403}
    if guard.site:
        codes |= {404, 422}  # an unknown site; no site named while several are readable
    return codes


def handler_codes(handler: HTTPRouteHandler, guard: Guard | None) -> set[int]:
    """The error codes of a handler: its guard's, plus what its parameters and method allow."""
    codes = guard_codes(guard)
    parameters = set(inspect.signature(handler.fn).parameters) - _NOT_PARAMETERS
    if parameters:
        codes |= {400, 422}  # Litestar's validation; the domain's checks name the field
    if any("{" in path for path in handler.paths):
        codes.add(404)
    if handler.http_methods & UNSAFE:
        codes.add(503)
        if guard is not None and guard.permission in (Permission.MANAGE_USERS, Permission.MANAGE_SITES):
            codes.add(409)  # a duplicate user or site; the last admin
        if handler.http_methods & {"POST", "PATCH", "PUT"}:
            codes.add(422)
    return codes


def handler_security(guard: Guard | None) -> list[dict[str, list[str]]]:
    if guard is None:
        return []
    if guard.open_to_links:
        return [{BEARER: []}, {SHARED_LINK: []}, {}]  # {}: anonymous, on a public site
    return [{BEARER: []}]


def _guard_of(controller: type, handler: HTTPRouteHandler) -> Guard | None:
    layer = next((vars(cls)["guards"] for cls in controller.__mro__ if isinstance(vars(cls).get("guards"), list)), [])
    guards = [g for g in [*layer, *(handler.guards or [])] if isinstance(g, Guard)]
    return guards[-1] if guards else None


def document_answers(controllers: list[type]) -> None:
    """Give every handler of the JSON API controllers the error answers and the security its
    guard and signature imply (a handler's own ``responses=`` entries win)."""
    for controller in controllers:
        for handler in vars(controller).values():
            if not isinstance(handler, HTTPRouteHandler):
                continue
            guard = _guard_of(controller, handler)
            derived = error_responses(*handler_codes(handler, guard))
            own = getattr(handler, "_footfall_own_responses", None)
            if own is None:
                own = handler._footfall_own_responses = dict(handler.responses or {})
            handler.responses = {**derived, **own}
            handler.security = handler_security(guard) or None


def public_operations(app: Litestar) -> set[tuple[str, str]]:
    """(METHOD, path) of the documented routes without a guard."""
    from litestar.routes import HTTPRoute

    public = set()
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            guards = [g for layer in handler.ownership_layers for g in (layer.guards or [])]
            if not any(isinstance(g, Guard) for g in guards):
                path = re.sub(r"{(\w+):\w+}", r"{\1}", route.path)
                public |= {(method, path) for method in handler.http_methods}
    return public


# -- ingest --------------------------------------------------------------------------------------
def _document_exports(operation: Operation) -> None:
    """A route taking ``format`` (:mod:`web.exports`) also answers 200 with a file."""
    if not any(getattr(parameter, "name", "") == "format" for parameter in operation.parameters or []):
        return
    answer = (operation.responses or {}).get("200")
    if isinstance(answer, OpenAPIResponse):
        binary = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        answer.content = {
            **(answer.content or {}),
            "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
            "application/pdf": OpenAPIMediaType(schema=binary),
        }
        answer.description = (answer.description or "") + " (with format=csv, json or pdf: that file, as an attachment)"


def _ref(name: str) -> Reference:
    return Reference(ref=f"#/components/schemas/{name}")


def _error_content() -> dict[str, OpenAPIMediaType]:
    return {"application/json": OpenAPIMediaType(schema=_ref("ErrorBody"))}


INGEST_BATCH_ANSWER = Schema(
    type="object", required=["status", "accepted", "results"], title="IngestBatchAnswer",
    description="A batch's answer: one result per item, in order",
    properties={
        "status": Schema(type="string", enum=["success", "partial", "ignored", "error"]),
        "accepted": Schema(type="integer", minimum=0),
        "results": Schema(type="array", items=Schema(type="object", required=["status"], properties={
            "status": Schema(type="string", enum=["success", "ignored", "error"]),
            "event_id": Schema(type="string"), "conversion_id": Schema(type="string"),
            "reason": Schema(type="string"), "error": _ref("ErrorDetail"),
        })),
    },
)


def _ingest_operation(summary: str, body: str, example: dict, compact: bool) -> PathItem:
    one_or_many = Schema(one_of=[_ref(body), Schema(type="array", items=_ref(body), min_items=1)])
    content = {"application/json": OpenAPIMediaType(schema=one_or_many, example=example)}
    if compact:  # the tracker sends its JSON as text/plain (no CORS preflight)
        content["text/plain"] = OpenAPIMediaType(schema=Schema(type="string"), example=msgspec.json.encode(example).decode())
    id_field = "conversion_id" if body == "ConversionBody" else "event_id"
    single = Schema(type="object", required=["status", id_field], properties={
        "status": Schema(type="string", enum=["success"]), id_field: Schema(type="string"),
    })
    json_answer = {"application/json": OpenAPIMediaType(schema=Schema(one_of=[single, _ref("IngestBatchAnswer")]))}
    responses: dict[str, OpenAPIResponse | Reference] = {
        "200": OpenAPIResponse(description="Accepted and committed; a batch is answered per item", content=json_answer),
        "202": OpenAPIResponse(description="Ignored (reason in X-Footfall-Ignored); the tracker's accepted events"),
    }
    if compact:  # the tracker's single events get an empty 202; a batch is answered like the others
        responses["200"] = OpenAPIResponse(
            description="A batch, answered per item",
            content={"application/json": OpenAPIMediaType(schema=_ref("IngestBatchAnswer"))},
        )
    for code in (400, 401, 403, 404, 413, 422, 429, 503):
        error = _error_content()
        if code in (422, 429):  # a batch whose every item failed (or was rate limited): per item
            error = {"application/json": OpenAPIMediaType(schema=Schema(one_of=[_ref("ErrorBody"), _ref("IngestBatchAnswer")]))}
        responses[str(code)] = OpenAPIResponse(description=ANSWERS[code], content=error)
    return PathItem(post=Operation(
        tags=["ingest"], summary=summary, operation_id=f"ingest{body}",
        description=(
            "Accepts one JSON object or a JSON array (batch, answered per item). Answered only after the "
            "event is durable. 400/422 name the bad field; 404 unknown site; 413 body too large; 503 storage "
            "full. Ignored events (bots) get 202 and X-Footfall-Ignored. No credential is needed; a bearer API key "
            "(not read-only, of a user who can read the site) makes a trusted server whose visitor's address may "
            "come from metadata.ip or X-Forwarded-For (README, Server-side events): 401 for an invalid key, 403 "
            "for a read-only one or a site its user cannot read."
        ),
        request_body=RequestBody(required=True, content=content),
        responses=responses,
        security=[{}, {BEARER: []}],  # anonymous, or a trusted server
    ))


def document(app: Litestar) -> None:
    """Complete the generated document: the error and ingest schemas, the ingest paths and
    ``security: []`` on public routes."""
    schema = app.openapi_schema
    paths = schema.paths if schema.paths is not None else {}
    public = public_operations(app)
    for path, item in paths.items():
        for method in ("get", "post", "put", "patch", "delete"):
            operation = getattr(item, method, None)
            if operation is None:
                continue
            if (method.upper(), path) in public:
                operation.security = []
            _document_exports(operation)
            for code, answer in (operation.responses or {}).items():
                # Litestar's own default (its validation error, {status_code, detail}): our
                # exception handlers answer every error with ErrorBody
                if code.startswith(("4", "5")) and isinstance(answer, OpenAPIResponse):
                    answer.content = _error_content()
    components = schema.components
    _, definitions = msgspec.json.schema_components(
        [EventBody, ConversionBody, CollectBody, ErrorBody], ref_template="#/components/schemas/{name}"
    )
    components.schemas = {**(components.schemas or {}), **{
        name: Schema(**_schema_kwargs(definition)) for name, definition in definitions.items()
    }, "IngestBatchAnswer": INGEST_BATCH_ANSWER}
    paths["/api/v1/events"] = _ingest_operation(
        "Track an event (seed API)", "EventBody",
        {"event_type": "page_view", "user_id": "user123", "session_id": "session456", "timestamp": "2024-07-29T12:34:56Z",
         "site": "example.com", "metadata": {"page_url": "https://example.com", "referrer_url": "https://referrer.com"}},
        compact=False,
    )
    paths["/api/v1/conversions"] = _ingest_operation(
        "Track a conversion (seed API)", "ConversionBody",
        {"conversion_type": "purchase", "user_id": "user123", "timestamp": "2024-07-29T12:45:00Z", "site": "example.com",
         "metadata": {"page_url": "https://example.com/checkout", "amount": 99.99, "currency": "USD"}},
        compact=False,
    )
    paths["/api/v1/collect"] = _ingest_operation(
        "Tracker endpoint (compact body, sent as text/plain)", "CollectBody",
        {"k": "pageview", "s": "example.com", "u": "https://example.com/pricing", "r": "https://news.ycombinator.com/", "w": 1280},
        compact=True,
    )
    document_compat_ingest(paths, components.schemas, lambda definition: Schema(**_schema_kwargs(definition)))
    schema.paths = paths


_KEYS = {"anyOf": "any_of", "oneOf": "one_of", "allOf": "all_of", "additionalProperties": "additional_properties",
         "minItems": "min_items", "maxItems": "max_items", "minLength": "min_length", "maxLength": "max_length",
         "$ref": "ref", "format": "format", "enum": "enum", "title": "title", "description": "description",
         "default": "default", "const": "const", "minimum": "minimum", "maximum": "maximum"}


def _schema_kwargs(definition: dict[str, Any]) -> dict[str, Any]:
    """msgspec's JSON Schema dict as litestar ``Schema`` arguments (nested schemas too)."""
    out: dict[str, Any] = {}
    for key, value in definition.items():
        if key == "$ref":
            return {"__ref__": value}
        name = _KEYS.get(key, key)
        if key == "properties":
            value = {k: _convert(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _convert(value)
        elif key in ("anyOf", "oneOf", "allOf"):
            value = [_convert(v) for v in value]
        out[name] = value
    return out


def _convert(definition: dict[str, Any]) -> Schema | Reference:
    kwargs = _schema_kwargs(definition)
    if "__ref__" in kwargs:
        return Reference(ref=kwargs["__ref__"])
    return Schema(**kwargs)
