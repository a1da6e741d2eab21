"""Ingest endpoints on the hot path, as lean ASGI handlers.

``POST /api/v1/events`` and ``POST /api/v1/conversions`` take the seed's bodies (or a JSON
array of them, answered per item); ``POST /api/v1/collect`` takes the tracker's compact body
(sent as text/plain, so browsers skip the CORS preflight). Each request decodes with msgspec,
runs the pipeline, hands accepted events to the group-commit writer and is answered only after
their batch is durable. An ignored event (a bot, say) is not an error: it is answered 202 with
the reason in ``X-Footfall-Ignored`` (GoatCounter's idea), and counted in ``/api/v1/health``.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from typing import Any

import msgspec
from litestar.handlers import asgi
from litestar.types import Receive, Scope, Send

from appliance.errors import StorageFullError
from appliance.ingest.clients import is_script_client
from appliance.ingest.drafts import (
    Draft,
    Dropped,
    InvalidInput,
    draft_from_collect_body,
    draft_from_conversion_body,
    draft_from_event_body,
)
from appliance.models import (
    CollectBody,
    ConversionBody,
    DropReason,
    EventBody,
    PrivacySignals,
    RequestContext,
)
from appliance.nesting import TOO_DEEP, json_too_deep
from appliance.ratelimit import IngestLimits, retry_after
from web.errors import error_body, field_from_msgspec
from web.ingest_asgi import CORS_HEADERS as _CORS
from web.ingest_asgi import JSON_HEADERS as _JSON_HEADERS
from web.ingest_asgi import TooLarge
from web.ingest_asgi import read_body as _read_body
from web.ingest_asgi import respond as _respond
from web.ingest_asgi import user_agent_and_authorization as _user_agent_and_authorization
from web.replication import refusal

_json = msgspec.json.Encoder()
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
_RATE_LIMITED = str(DropReason.RATE_LIMITED)


class ClientAddress:
    """Finds the client IP, trusting ``X-Forwarded-For`` only from configured proxies."""

    def __init__(self, trusted_proxies: list[str]) -> None:
        self._networks = [ipaddress.ip_network(item, strict=False) for item in trusted_proxies]
        # IPv4 networks as (address, mask) integers: a dotted quad is checked with the C
        # parser (socket.inet_pton accepts exactly what ipaddress accepts for IPv4), not by
        # building an IPv4Address per request
        self._ipv4 = [(int(net.network_address), int(net.netmask)) for net in self._networks if net.version == 4]
        self._verdicts: dict[str, bool] = {}

    def is_trusted_proxy(self, address: str) -> bool:
        return self._trusted(address)

    def _trusted(self, address: str) -> bool:
        if not self._networks:
            return False
        known = self._verdicts.get(address)
        if known is not None:
            return known
        try:
            packed = socket.inet_pton(socket.AF_INET, address)
        except (OSError, ValueError):  # not a dotted quad (IPv6, a name, garbage): the full parser
            try:
                ip = ipaddress.ip_address(address)
            except ValueError:
                verdict = False
            else:
                verdict = any(ip in network for network in self._networks)
        else:
            number = int.from_bytes(packed, "big")
            verdict = any(number & mask == network for network, mask in self._ipv4)
        # Only proxies' addresses are remembered: clients' addresses are never kept, not
        # even in memory. Proxies are few, but bound the dict anyway.
        if verdict and len(self._verdicts) < 1024:
            self._verdicts[address] = verdict
        return verdict

    def __call__(self, scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else ""
        if self._networks and self._trusted(peer):
            for name, value in scope["headers"]:
                if name == b"x-forwarded-for":
                    hops = [hop.strip() for hop in value.decode("latin-1").split(",") if hop.strip()]
                    # the right-most address not belonging to a trusted proxy is the client
                    for hop in reversed(hops):
                        if not self._trusted(hop):
                            return hop
        return peer


def _forwarded_visitor(scope) -> str:
    """The left-most ``X-Forwarded-For`` address: the visitor a trusted caller forwards."""
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            first = value.decode("latin-1").split(",")[0].strip()
            try:
                return str(ipaddress.ip_address(first))
            except ValueError:
                return ""
    return ""


HINT = (
    "server-side events: send the visitor's user agent as metadata.user_agent, or authenticate "
    "with an API key; see README#server-side-events"
)


class Refused(Exception):
    """A credential that is presented but cannot ingest: answered 401 or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def ingest_caller(accounts, authorization: bytes):
    """Who sends server-side events: for ``Authorization: Bearer`` with an API key (or a
    login token), the user's ``can_read_site`` (whether they may ingest for a site id); None
    without a bearer credential. A presented credential that is not valid is refused (401),
    as is one that is read-only (403: a read-only key, a shared link). Keys are looked up by
    their SHA-256 digest (no password hashing on this path)."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    if token.startswith("ffs_"):
        raise Refused(403, "a shared link is read-only")
    if token.startswith("ffk_"):
        found = accounts.user_for_api_key(token)
        if found is not None and found[1].read_only:
            raise Refused(403, "this API key is read-only")
        user = found[0] if found is not None else None
    else:
        user = accounts.user_for_token(token)
    if user is None:
        raise Refused(401, "the token is invalid, expired or revoked")
    return user.can_read_site


class IngestEndpoint:
    """One ingest endpoint: its bound :meth:`handle` is the route's raw ASGI handler.

    What differs between the endpoints (the body type, how a body becomes a draft, the id
    field answered, the tracker's compact answers) is set once here; the client address and
    the rate limits are shared by all three endpoints. The pipeline and the writer are read
    from the appliance per request: they exist once it is open (in the lifespan).
    """

    __slots__ = (
        "appliance", "client_address", "per_ip", "per_site", "limit", "max_items",
        "decoder", "to_draft", "id_field", "prefix", "compact",
    )

    def __init__(
        self, appliance: Any, client_address: ClientAddress, limits: IngestLimits,
        body_type: type, to_draft: Callable[[Any], Draft], id_field: str, compact: bool,
    ) -> None:
        settings = appliance.settings.ingest
        self.appliance = appliance
        self.client_address = client_address
        self.per_ip = limits.per_ip  # None when off: the hot path then pays one comparison
        self.per_site = limits.per_site
        self.limit = settings.max_body_bytes
        self.max_items = settings.max_batch_items
        self.decoder = msgspec.json.Decoder(body_type)
        self.to_draft = to_draft
        self.id_field = id_field
        self.prefix = "cnv_" if id_field == "conversion_id" else "evt_"
        self.compact = compact

    def _draft(self, raw: bytes | msgspec.Raw) -> Draft:
        try:
            return self.to_draft(self.decoder.decode(raw))
        except msgspec.ValidationError as error:
            field, message = field_from_msgspec(error)
            raise InvalidInput(field, message, 400) from None
        except (msgspec.DecodeError, UnicodeDecodeError) as error:  # invalid UTF-8 in a string
            raise InvalidInput("$", f"malformed JSON: {error}", 400) from None
        except RecursionError:  # the body was scanned for depth: this is only a backstop
            raise InvalidInput("$", TOO_DEEP, 400) from None

    async def _too_many(self, send: Send, wait: float, drops: int) -> None:
        self.appliance.pipeline.count_drop(_RATE_LIMITED, drops)
        seconds = str(retry_after(wait)).encode()
        await _respond(send, 429, _json.encode(error_body(None, f"rate limited; retry after {seconds.decode()} s")),
                       [*_JSON_HEADERS, (b"retry-after", seconds)])

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await _respond(send, 204, headers=_CORS)
            return
        if method != "POST":
            await _respond(send, 405, _json.encode(error_body(None, "use POST")))
            return
        appliance = self.appliance
        if appliance.following:  # a standby stores only what it pulls from its primary
            await _respond(send, 503, refusal(appliance.follower.primary), [*_JSON_HEADERS, (b"retry-after", b"60")])
            return
        ip = self.client_address(scope)
        agent, authorization, signals = _user_agent_and_authorization(scope)
        caller = None
        if authorization:
            try:
                caller = ingest_caller(appliance.accounts, authorization)
            except Refused as refused:
                extra = [(b"www-authenticate", b"Bearer")] if refused.status == 401 else []
                await _respond(send, refused.status, _json.encode(error_body(None, refused.message)),
                               [*_JSON_HEADERS, *extra])
                return
        per_ip = self.per_ip
        if caller is not None:  # a trusted server: its visitor's forwarded address; no per-IP limit
            ip = _forwarded_visitor(scope) or ip
        elif per_ip is not None and (wait := per_ip.take(ip)):
            await self._too_many(send, wait, 1)
            return
        limit = self.limit
        try:
            body = await _read_body(receive, limit)
        except TooLarge:
            await _respond(send, 413, _json.encode(error_body("$", f"body larger than {limit} bytes")))
            return
        except ConnectionError:
            return
        if json_too_deep(body):
            await _respond(send, 400, _json.encode(error_body("$", TOO_DEEP)))
            return
        received = time.time()
        stripped = body.lstrip()
        if stripped[:1] == b"[":
            await self._batch(send, body, received, ip, agent, caller, signals)
            return
        try:
            draft = self._draft(body)
            context = RequestContext(
                    client_ip=ip, user_agent=agent, received_at=received, caller=caller, signals=signals
                )
            event = appliance.pipeline.process(draft, context)
        except InvalidInput as error:
            await _respond(send, error.status, _json.encode(error_body(error.field, error.message)))
            return
        except Dropped as drop:
            headers = [*_JSON_HEADERS, (b"x-footfall-ignored", str(drop.reason).encode())]
            if self.compact:
                await _respond(send, 202, b"", headers)
            else:
                await _respond(send, 202, _json.encode(_ignored(drop, draft, caller, agent)), headers)
            return
        per_site = self.per_site
        if per_site is not None and (wait := per_site.take(event.site_id)):
            await self._too_many(send, wait, 1)
            return
        try:
            keys = await appliance.writer.write([event])
        except StorageFullError as error:
            await _respond(send, 503, _json.encode(error_body(None, f"storage unavailable: {error}")),
                           [*_JSON_HEADERS, (b"retry-after", b"60")])
            return
        await appliance.replication.acknowledged()  # sync mode: once the standby holds it
        if self.compact:
            await _respond(send, 202, b"")
        else:
            await _respond(send, 200, _json.encode({"status": "success", self.id_field: self.prefix + keys[0].hex()}))

    async def _batch(
        self, send: Send, body: bytes, received: float, ip: str, agent: str, caller, signals: PrivacySignals
    ) -> None:
        try:
            items = _raw_list.decode(body)
        except (msgspec.ValidationError, msgspec.DecodeError) as error:
            await _respond(send, 400, _json.encode(error_body("$", f"malformed JSON: {error}")))
            return
        except RecursionError:
            await _respond(send, 400, _json.encode(error_body("$", TOO_DEEP)))
            return
        if not items:
            await _respond(send, 422, _json.encode(error_body("$", "empty batch")))
            return
        max_items = self.max_items
        if len(items) > max_items:
            await _respond(send, 413, _json.encode(error_body("$", f"more than {max_items} items in one batch")))
            return
        results: list[dict[str, Any]] = []
        accepted = []
        positions = []
        appliance = self.appliance
        pipeline = appliance.pipeline
        per_site = self.per_site
        wait = 0.0
        for index, raw in enumerate(items):
            try:
                draft = self._draft(raw)
                context = RequestContext(
                    client_ip=ip, user_agent=agent, received_at=received, caller=caller, signals=signals
                )
                event = pipeline.process(draft, context)
                if per_site is not None and (site_wait := per_site.take(event.site_id)):
                    wait = max(wait, site_wait)
                    pipeline.count_drop(_RATE_LIMITED)
                    results.append({"status": "error", "error": {"field": f"[{index}]", "message": "rate limited"}})
                    continue
                accepted.append(event)
                positions.append(index)
                results.append({"status": "success"})
            except InvalidInput as error:
                results.append({"status": "error", "error": {"field": f"[{index}].{error.field}", "message": error.message}})
            except Dropped as drop:
                results.append(_ignored(drop, draft, caller, agent))
        if accepted:
            try:
                keys = await appliance.writer.write(accepted)
            except StorageFullError as error:
                await _respond(send, 503, _json.encode(error_body(None, f"storage unavailable: {error}")),
                               [*_JSON_HEADERS, (b"retry-after", b"60")])
                return
            await appliance.replication.acknowledged()  # sync mode: once the standby holds them
            id_field, prefix = self.id_field, self.prefix
            for index, key in zip(positions, keys, strict=True):
                results[index][id_field] = prefix + key.hex()
        ok = len(accepted)
        ignored_only = all(r["status"] == "ignored" for r in results)
        status = "success" if ok == len(items) else "partial" if ok else "ignored" if ignored_only else "error"
        code = 200 if ok or any(r["status"] == "ignored" for r in results) else 429 if wait else 422
        headers = [*_JSON_HEADERS, (b"retry-after", str(retry_after(wait)).encode())] if wait else None
        await _respond(send, code, _json.encode({"status": status, "accepted": ok, "results": results}), headers)


def _ignored(drop: Dropped, draft: Draft, caller, agent: str) -> dict[str, str]:
    """The answer to an ignored event; an anonymous script (curl, a server's HTTP library)
    dropped as a bot for its own User-Agent is told how to send server-side events."""
    answer = {"status": "ignored", "reason": str(drop.reason)}
    if drop.reason == DropReason.BOT and caller is None and not draft.user_agent and is_script_client(agent):
        answer["hint"] = HINT
    return answer


def ingest_gate(appliance) -> tuple[ClientAddress, IngestLimits]:
    """The client address logic and the rate limits every ingest route shares (the foreign
    protocols' routes of :mod:`web.ingest_compat` too: one budget per address and site)."""
    settings = appliance.settings
    limits = IngestLimits(
        settings.ingest.rate_limit_per_ip, settings.ingest.rate_limit_per_site, settings.ingest.rate_limit_burst_seconds
    )
    return ClientAddress(settings.server.trusted_proxies), limits


def make_ingest_handlers(appliance, gate: tuple[ClientAddress, IngestLimits] | None = None) -> list:
    """The three ingest routes around one appliance (opened later, in the lifespan)."""
    client_address, limits = gate or ingest_gate(appliance)

    def route(path: str, name: str, body_type: type, to_draft: Callable[[Any], Draft], id_field: str, compact: bool):
        endpoint = IngestEndpoint(appliance, client_address, limits, body_type, to_draft, id_field, compact)
        return asgi(path, name=name, copy_scope=False)(endpoint.handle)

    return [
        route("/api/v1/events", "ingest_events", EventBody, draft_from_event_body, "event_id", False),
        route("/api/v1/conversions", "ingest_conversions", ConversionBody, draft_from_conversion_body, "conversion_id", False),
        route("/api/v1/collect", "ingest_collect", CollectBody, draft_from_collect_body, "event_id", True),
    ]
