"""Plausible's ``POST /api/event`` and Umami's ``POST /api/send``, as lean ASGI handlers.

Trackers and clients built for those tools send here unchanged. Each body is translated into
drafts (:mod:`appliance.ingest.compat`) and runs through the one pipeline and writer of
:mod:`web.ingest`, with the same client address logic (``X-Forwarded-For`` only from trusted
proxies), rate limits, body limit, nesting guard and CORS as the tracker's routes. Only the
answers differ, shaped as each tool answers:

- Plausible: ``202`` with the text ``ok``, also for an ignored event (a bot, an unknown
  domain), which is marked with ``X-Plausible-Dropped: 1`` and Footfall's
  ``X-Footfall-Ignored: <reason>``; a malformed body is ``400`` with Plausible's
  ``{"errors": {field: [message]}}`` beside Footfall's ``{"status", "error"}``.
- Umami: ``200`` ``{"cache": "", "sessionId": "", "visitId": ""}`` (Footfall keeps no session
  ids to hand out), ``{"beep": "boop"}`` for a bot, ``400`` for an unknown website id. An
  ``identify`` call is checked and answered but stores nothing: Footfall keeps no raw user
  ids or per-visitor session data (``X-Footfall-Ignored: identify``).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

import msgspec
from litestar.handlers import asgi
from litestar.types import Receive, Scope, Send

from appliance.errors import StorageFullError
from appliance.ingest.compat import (
    PlausibleBody,
    UmamiBody,
    draft_from_umami,
    drafts_from_plausible,
)
from appliance.ingest.drafts import Draft, Dropped, InvalidInput
from appliance.models import DropReason, RequestContext
from appliance.nesting import TOO_DEEP, json_too_deep
from appliance.ratelimit import IngestLimits, retry_after
from web.errors import error_body, field_from_msgspec
from web.ingest import ClientAddress, ingest_gate
from web.ingest_asgi import TooLarge, read_body, respond, user_agent_and_authorization
from web.replication import refusal_message

_json = msgspec.json.Encoder()
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"content-type, x-umami-cache"),
    (b"access-control-max-age", b"86400"),
]
_JSON = [(b"content-type", b"application/json"), *_CORS]
_TEXT = [(b"content-type", b"text/plain; charset=utf-8"), *_CORS]
_RATE_LIMITED = str(DropReason.RATE_LIMITED)


class Dialect(ABC):
    """What one tool's endpoint decodes and how it answers (Plausible's and Umami's below)."""

    name = ""
    unknown_site_is_silent = False

    @abstractmethod
    def drafts(self, body: bytes) -> tuple[list[Draft], bool]:
        """The body's drafts, and whether they only name a site to check (nothing to count)."""

    def error(self, status: int, field: str | None, message: str) -> tuple[int, bytes, list]:
        """A refusal in Footfall's error shape (a dialect may add its tool's own fields)."""
        return status, _json.encode(error_body(field, message)), _JSON

    @abstractmethod
    def accepted(self, ignored: str | None) -> tuple[int, bytes, list]:
        """The answer to a body taken (``ignored``: why nothing was counted, if so)."""


class PlausibleDialect(Dialect):
    name = "plausible"
    unknown_site_is_silent = True  # Plausible answers 202 for a domain it does not know
    _decoder = msgspec.json.Decoder(PlausibleBody)

    def drafts(self, body: bytes) -> tuple[list[Draft], bool]:
        return drafts_from_plausible(self._decoder.decode(body)), False

    def error(self, status: int, field: str | None, message: str) -> tuple[int, bytes, list]:
        answer = error_body(field, message)
        answer["errors"] = {field or "request": [message]}
        return status, _json.encode(answer), _JSON

    def accepted(self, ignored: str | None) -> tuple[int, bytes, list]:
        if ignored is None:
            return 202, b"ok", _TEXT
        return 202, b"ok", [*_TEXT, (b"x-plausible-dropped", b"1"), (b"x-footfall-ignored", ignored.encode())]


class UmamiDialect(Dialect):
    name = "umami"
    _decoder = msgspec.json.Decoder(UmamiBody)

    def drafts(self, body: bytes) -> tuple[list[Draft], bool]:
        decoded = self._decoder.decode(body)
        return [draft_from_umami(decoded)], decoded.type == "identify"

    def accepted(self, ignored: str | None) -> tuple[int, bytes, list]:
        if ignored == str(DropReason.BOT):
            return 200, b'{"beep":"boop"}', [*_JSON, (b"x-footfall-ignored", ignored.encode())]
        headers = _JSON if ignored is None else [*_JSON, (b"x-footfall-ignored", ignored.encode())]
        return 200, b'{"cache":"","sessionId":"","visitId":""}', headers


class CompatEndpoint:
    """One foreign ingest route: its bound :meth:`handle` is the route's raw ASGI handler."""

    __slots__ = ("appliance", "client_address", "per_ip", "per_site", "limit", "dialect")

    def __init__(self, appliance: Any, client_address: ClientAddress, limits: IngestLimits, dialect: Dialect) -> None:
        self.appliance = appliance
        self.client_address = client_address
        self.per_ip = limits.per_ip
        self.per_site = limits.per_site
        self.limit = appliance.settings.ingest.max_body_bytes
        self.dialect = dialect

    async def _answer(self, send: Send, answer: tuple[int, bytes, list]) -> None:
        status, body, headers = answer
        await respond(send, status, body, headers)

    async def _too_many(self, send: Send, wait: float) -> None:
        self.appliance.pipeline.count_drop(_RATE_LIMITED)
        seconds = str(retry_after(wait)).encode()
        status, body, headers = self.dialect.error(429, None, f"rate limited; retry after {seconds.decode()} s")
        await respond(send, status, body, [*headers, (b"retry-after", seconds)])

    def _drafts(self, body: bytes) -> tuple[list[Draft], bool]:
        try:
            return self.dialect.drafts(body)
        except msgspec.ValidationError as error:
            field, message = field_from_msgspec(error)
            raise InvalidInput(field, message, 400) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as error:
            raise InvalidInput("$", f"malformed JSON: {error}", 400) from None
        except RecursionError:
            raise InvalidInput("$", TOO_DEEP, 400) from None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await respond(send, 204, headers=_CORS)
            return
        dialect = self.dialect
        if method != "POST":
            await self._answer(send, dialect.error(405, None, "use POST"))
            return
        appliance = self.appliance
        if appliance.following:  # a standby stores only what it pulls from its primary
            status, body, headers = dialect.error(503, None, refusal_message(appliance.follower.primary))
            await respond(send, status, body, [*headers, (b"retry-after", b"60")])
            return
        ip = self.client_address(scope)
        if self.per_ip is not None and (wait := self.per_ip.take(ip)):
            await self._too_many(send, wait)
            return
        try:
            body = await read_body(receive, self.limit)
        except TooLarge:
            await self._answer(send, dialect.error(413, "$", f"body larger than {self.limit} bytes"))
            return
        except ConnectionError:
            return
        if json_too_deep(body):
            await self._answer(send, dialect.error(400, "$", TOO_DEEP))
            return
        agent, _, signals = user_agent_and_authorization(scope)  # Sec-GPC and DNT count here too
        context = RequestContext(client_ip=ip, user_agent=agent, received_at=time.time(), signals=signals)
        pipeline = self.appliance.pipeline
        events, ignored = [], None
        try:
            drafts, check_only = self._drafts(body)
            if check_only:
                pipeline.resolve_site(drafts[0])  # an unknown website id is still an error
                await self._answer(send, dialect.accepted("identify"))
                return
            for draft in drafts:
                try:
                    events.append(pipeline.process(draft, context))
                except Dropped as drop:
                    ignored = str(drop.reason)
                except InvalidInput as error:
                    if not (dialect.unknown_site_is_silent and error.status == 404):
                        raise
                    ignored = str(DropReason.UNKNOWN_SITE)
        except InvalidInput as error:
            # both tools answer a body they cannot take (or an unknown site) with a 400
            status = 400 if error.status in (404, 422) else error.status
            await self._answer(send, dialect.error(status, error.field, error.message))
            return
        per_site = self.per_site
        if per_site is not None:
            for event in events:
                if wait := per_site.take(event.site_id):
                    await self._too_many(send, wait)
                    return
        if events:
            try:
                await self.appliance.writer.write(events)
            except StorageFullError as error:
                status, answer, headers = dialect.error(503, None, f"storage unavailable: {error}")
                await respond(send, status, answer, [*headers, (b"retry-after", b"60")])
                return
            await appliance.replication.acknowledged()  # sync mode: once the standby holds them
        await self._answer(send, dialect.accepted(None if events else ignored))


def make_compat_handlers(appliance, gate: tuple[ClientAddress, IngestLimits] | None = None) -> list:
    """``/api/event`` (Plausible) and ``/api/send`` (Umami) around one appliance; ``gate``: the
    tracker routes' client address logic and rate limits (:func:`web.ingest.ingest_gate`)."""
    client_address, limits = gate or ingest_gate(appliance)

    def route(path: str, name: str, dialect: Dialect):
        endpoint = CompatEndpoint(appliance, client_address, limits, dialect)
        return asgi(path, name=name, copy_scope=False)(endpoint.handle)

    return [
        route("/api/event", "ingest_plausible", PlausibleDialect()),
        route("/api/send", "ingest_umami", UmamiDialect()),
    ]
