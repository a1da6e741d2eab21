"""Replication on the web: the primary's pull endpoints, the standby's status and promotion,
and the read-only rule while following.

``GET /api/v1/replication/events?after=CURSOR&limit=N`` (admin: the standby's token is an
admin API key of the primary) answers the journal's events after the cursor; with ``Prefer:
wait=S`` (RFC 7240) it long-polls up to ``S`` seconds (at most 60) when there are none; ``GET /api/v1/replication/records`` every record
(users with their password hashes, API-key digests, the visitor-hash secret and salts: admin
only, over TLS between machines). ``GET /api/v1/replication/status`` is this server's role and
lag; ``GET /api/v1/replication/seed`` a copy of the store for a new standby (a tar of a backup,
:mod:`appliance.operations.seeding`); ``POST /api/v1/replication/promote`` turns a standby into a primary (``footfall promote``
calls it). See :mod:`appliance.operations.replication` and :mod:`appliance.operations.following`.

While the server follows a primary every write is refused with 503 and a message naming the
primary (:func:`read_only_while_following`, and the ingest handlers themselves), except
signing in and out (a standby's own sessions) and promotion.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import PathParameter, QueryParameter
from litestar.response import Stream
from litestar.status_codes import HTTP_200_OK
from litestar.types import ASGIApp, Receive, Scope, Send

from appliance.operations.seeding import seed_archive
from web.api_accounts import audit
from web.auth import can_manage_settings
from web.dependencies import ApplianceDep
from web.openapi import error_responses

_SAFE = {"GET", "HEAD", "OPTIONS"}
#: writes a standby still takes: its own sign-ins, and becoming a primary
ALLOWED_WHILE_FOLLOWING = {"/api/v1/authenticate", "/login", "/logout", "/api/v1/replication/promote"}


def refusal_message(primary: str) -> str:
    """Why a write is refused on a standby."""
    return (
        f"this server is a read-only standby following {primary}: send writes to the primary, "
        "or promote this server (footfall promote / POST /api/v1/replication/promote)"
    )


def refusal(primary: str) -> bytes:
    """The body of a write refused on a standby."""
    return msgspec.json.encode({"status": "error", "error": {"field": None, "message": refusal_message(primary)}})


def read_only_while_following(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: a standby answers every write 503 (see the module docstring)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _SAFE and scope["path"] not in ALLOWED_WHILE_FOLLOWING:
            appliance = getattr(scope["app"].state, "appliance", None)
            if appliance is not None and appliance.following:
                body = refusal(appliance.follower.primary)
                await send({"type": "http.response.start", "status": 503, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"60"),
                ]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return middleware


def _preferred_wait(prefer: str) -> float:
    """The ``wait`` preference of a ``Prefer`` header, in seconds (0 to 60)."""
    for part in prefer.split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait":
            try:
                return min(max(float(value.strip()), 0.0), 60.0)
            except ValueError:
                return 0.0
    return 0.0


class ReplicationController(Controller):
    path = "/api/v1/replication"
    tags = ["replication"]
    guards = [can_manage_settings]

    @get("/events", sync_to_thread=True, summary="Committed events after a cursor, in commit order (a standby's pull)",
         description="With `Prefer: wait=SECONDS` (RFC 7240, at most 60) the answer waits for the next commit "
         "when no event is newer than `after` (a long poll). Asking for events after `N` confirms that the "
         "standby holds everything up to `N` (synchronous mode waits for that). 410 when `after` is older "
         "than the journal keeps, 409 when this server keeps none.",
         responses=error_responses(409, 410))
    def events(
        self,
        request: Request,
        appliance: ApplianceDep,
        after: Annotated[int, QueryParameter(ge=0, description="The last sequence the standby holds")] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=10_000, description="At most this many events")] = 1000,
    ) -> dict[str, Any]:
        pulled = appliance.replication.pull(after, limit, _preferred_wait(request.headers.get("prefer", "")))
        return {"status": "success", "data": msgspec.to_builtins(pulled)}

    @get("/records", sync_to_thread=True, summary="Every record (users, keys, sites, definitions, salts) for a standby")
    def records(self, appliance: ApplianceDep) -> dict[str, Any]:
        return {"status": "success", "data": msgspec.to_builtins(appliance.replication.records_snapshot())}

    @get("/imported/{site_id:int}", sync_to_thread=True,
         summary="A site's imported daily aggregates (a Plausible CSV import) for a standby",
         description="Every row as `[table, day number, value, metrics]` (metrics in the order of "
         "`storage.imported.METRICS`); a standby fetches them when an import record is new to it.")
    def imported(
        self, appliance: ApplianceDep,
        site_id: Annotated[int, PathParameter(ge=0, le=2**32 - 1, description="The site's id")],
    ) -> dict[str, Any]:
        return {"status": "success", "data": {"site": site_id, "rows": appliance.imported.site_rows(site_id)}}

    @get("/seed", sync_to_thread=True, media_type="application/x-tar",
         summary="A consistent copy of this server's store to seed a new standby (a backup, as a tar archive)",
         description="Starts the replication journal first (if it was not kept), then copies the store from one "
         "read transaction, so the journal holds every event after the copy's last one (`event_count` in its "
         "`manifest.json`). `footfall serve --follow` with an empty data dir fetches it by itself when the "
         "journal does not reach back to the first event. 409 when this server keeps no journal.",
         responses=error_responses(409))
    def seed(self, request: Request, appliance: ApplianceDep) -> Stream:
        chunks = seed_archive(appliance.replication, appliance.settings.data_dir)
        audit(appliance, request, "replication.seed", "standby")
        return Stream(chunks, media_type="application/x-tar", headers={
            "content-disposition": 'attachment; filename="footfall-seed.tar"', "cache-control": "no-store",
        })

    @get("/status", sync_to_thread=True, summary="This server's replication role and lag")
    def status(self, appliance: ApplianceDep) -> dict[str, Any]:
        return {"status": "success", "data": appliance.replication_status()}

    @post("/promote", status_code=HTTP_200_OK, sync_to_thread=True,
          summary="Turn this standby into a primary (409 when it is not a standby)", responses=error_responses(409))
    def promote(self, request: Request, appliance: ApplianceDep) -> dict[str, Any]:
        status = appliance.promote()
        audit(appliance, request, "replication.promote", appliance.settings.replication.follow)
        return {"status": "success", "data": status}


REPLICATION_CONTROLLERS = [ReplicationController]
