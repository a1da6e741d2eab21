"""The OpenAPI description of the foreign ingest routes (:mod:`web.ingest_compat`): Plausible's
``POST /api/event`` and Umami's ``POST /api/send``, raw ASGI handlers that Litestar does not
document itself. :func:`document_compat_ingest` adds them to the generated document."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIResponse,
    Operation,
    PathItem,
    Reference,
    RequestBody,
    Schema,
)

from appliance.ingest.compat import PlausibleBody, UmamiBody

_ERROR = {"application/json": OpenAPIMediaType(schema=Reference(ref="#/components/schemas/ErrorBody"))}
_ERRORS = {
    "400": "The body cannot be taken (the field is named), or an unknown Umami website id",
    "413": "Body too large",
    "429": "Too many requests: retry after the Retry-After header's seconds",
    "503": "Storage is full or unavailable: retry later",
}


def _operation(summary: str, description: str, body: str, example: dict, answers: dict[str, OpenAPIResponse]) -> PathItem:
    text = msgspec.json.encode(example).decode()
    content = {
        "application/json": OpenAPIMediaType(schema=Reference(ref=f"#/components/schemas/{body}"), example=example),
        "text/plain": OpenAPIMediaType(schema=Schema(type="string"), example=text),
    }
    responses: dict[str, OpenAPIResponse | Reference] = dict(answers)
    for code, text in _ERRORS.items():
        responses[code] = OpenAPIResponse(description=text, content=_ERROR)
    return PathItem(post=Operation(
        tags=["ingest"], summary=summary, description=description, operation_id=f"ingest{body}",
        request_body=RequestBody(required=True, content=content), responses=responses, security=[],
    ))


def document_compat_ingest(paths: dict[str, PathItem], schemas: dict[str, Any], to_schema) -> None:
    """Add the two paths and their body schemas (``to_schema`` turns msgspec's JSON Schema
    dicts into litestar ``Schema`` objects, as :func:`web.openapi.document` does)."""
    _, definitions = msgspec.json.schema_components([PlausibleBody, UmamiBody], ref_template="#/components/schemas/{name}")
    schemas.update({name: to_schema(definition) for name, definition in definitions.items()})
    paths["/api/event"] = _operation(
        "Plausible's Events API (README: Switching from Plausible)",
        "Plausible's body, long or short keys; answered as Plausible answers: 202 `ok`, also for an ignored "
        "event (X-Plausible-Dropped: 1, X-Footfall-Ignored: reason); 400 with `errors` for a bad body.",
        "PlausibleBody",
        {"name": "pageview", "url": "https://example.com/pricing", "domain": "example.com", "referrer": "https://news.ycombinator.com/"},
        {"202": OpenAPIResponse(description="Accepted (or ignored: X-Plausible-Dropped)",
                                content={"text/plain": OpenAPIMediaType(schema=Schema(type="string", enum=["ok"]))})},
    )
    answer = Schema(type="object", properties={
        "cache": Schema(type="string"), "sessionId": Schema(type="string"), "visitId": Schema(type="string"),
        "beep": Schema(type="string"),
    })
    paths["/api/send"] = _operation(
        "Umami's send API (README: Switching from Umami)",
        "Umami's `{type, payload}` body (event or identify; identify stores nothing); answered as Umami "
        "answers: 200 `{cache, sessionId, visitId}`, `{beep: boop}` for a bot, 400 for a bad body or website id.",
        "UmamiBody",
        {"type": "event", "payload": {"website": "94db1cb1-74f4-4a40-ad6c-962362670409", "hostname": "example.com",
                                      "url": "/pricing", "language": "en-US", "screen": "1920x1080"}},
        {"200": OpenAPIResponse(description="Accepted, ignored, or an identify call",
                                content={"application/json": OpenAPIMediaType(schema=answer)})},
    )
