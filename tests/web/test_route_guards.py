"""Every route of the app declares the access rule docs/security.md gives it.

The route table is read from the app itself, so a new route without a guard, or with a
guard the docs do not describe, fails here before it ships. The live behaviour of the same
table is exercised in ``tests/e2e/test_access_matrix.py``.
"""

from __future__ import annotations

import pytest

from appliance.accounts.permissions import ROLE_PERMISSIONS
from appliance.config import load_settings
from tests.web.route_table import (
    app_routes,
    docs_row,
    documented_role_permissions,
    documented_rules,
    is_public,
    rule_of,
)
from web.app import create_app
from web.auth import Guard

APP = create_app(load_settings(environ={}))
ROUTES = app_routes(APP)
RULES = documented_rules()


def test_the_route_table_is_found():
    assert len(ROUTES) > 30
    assert len(RULES) > 25


@pytest.mark.parametrize("entry", ROUTES, ids=[f"{e.method} {e.path}" for e in ROUTES])
def test_route_declares_a_guard_or_is_public(entry):
    if is_public(entry.method, entry.path):
        assert not any(isinstance(g, Guard) for g in entry.guards), "a public route with a guard"
        return
    rule = rule_of(entry)
    assert rule is not None, f"{entry.method} {entry.path} declares no guard and is not public"
    documented = RULES.get((entry.method, entry.path))
    assert documented is not None, (
        f"{entry.method} {entry.path} is missing from docs/security.md; if its guard is right, add:\n"
        + docs_row(entry, rule)
    )
    assert rule == documented


def test_every_documented_route_exists():
    existing = {(entry.method, entry.path) for entry in ROUTES}
    assert set(RULES) <= existing, sorted(set(RULES) - existing)


def test_documented_roles_match_the_code():
    assert documented_role_permissions() == {role: set(p) for role, p in ROLE_PERMISSIONS.items()}


def test_handlers_never_check_roles_themselves():
    """Access is decided by guards: the API and dashboard handlers do not look at roles."""
    import inspect

    import web.api
    import web.login

    for module in (web.api, web.login):
        source = inspect.getsource(module)
        for forbidden in ("Role.ADMIN", "Role.ANALYST", "Role.VIEWER", ".role is", ".role =="):
            assert forbidden not in source, f"{module.__name__} checks access itself: {forbidden}"


# Handlers that may stay on the event loop: lean, and never waiting on the appliance's
# queries, LMDB writes (fsync) or password hashing. Everything else runs in a worker thread,
# so a slow report can never stall the tracker's ingest requests.
ON_THE_LOOP = {
    "/api/v1/events": "ingest: raw ASGI, hands events to the writer thread and awaits it",
    "/api/v1/conversions": "ingest: raw ASGI",
    "/api/v1/collect": "ingest: raw ASGI (the tracker)",
    "/sites/{domain:str}/live/stream": "the live view's SSE stream: awaits the live queue",
    "/js/footfall.js": "the tracker script (a small file, no appliance)",
    "/favicon.ico": "the icon (bytes read at import, no appliance)",
    "/api/v1/health": "async only to choose its status code; the report is read in a worker thread",
    "/api/v1/healthz": "the same handler as /api/v1/health",
    "/api/event": "ingest: raw ASGI (Plausible's body), like /api/v1/events",
    "/api/send": "ingest: raw ASGI (Umami's body), like /api/v1/events",
    "/js/{script:str}": "the tracker in Plausible compatibility mode (cached bytes, no appliance)",
    "/script.js": "the tracker in Umami compatibility mode (cached bytes, no appliance)",
    "/api/v1/health/live": "liveness: answers from the loop itself, touching nothing else",
    "/ready": "async only to choose its status code; the probe writes LMDB in a worker thread",
}
ON_THE_LOOP_PREFIXES = ("/static", "/schema")  # vendored assets; the OpenAPI document and its UI


def _loop_handlers(app):
    """(path, handler name, runs on the loop) for every route handler of the app."""
    import inspect

    from litestar.routes import ASGIRoute, HTTPRoute

    for route in app.routes:
        if isinstance(route, ASGIRoute):
            yield route.path, route.route_handler.handler_name, True
            continue
        assert isinstance(route, HTTPRoute), route
        for handler in route.route_handlers:
            if handler.handler_name == "options_handler":
                continue
            fn = getattr(handler.fn, "func", handler.fn)
            on_loop = inspect.iscoroutinefunction(fn) or not handler.sync_to_thread
            yield route.path, handler.handler_name, on_loop


def test_only_named_handlers_run_on_the_event_loop():
    on_loop = {
        (path, name) for path, name, loop in _loop_handlers(APP)
        if loop and path not in ON_THE_LOOP and not path.startswith(ON_THE_LOOP_PREFIXES)
    }
    assert not on_loop, (
        "these handlers run on the event loop (async, or sync without sync_to_thread=True); make them "
        f"`def` with sync_to_thread=True, or name them in ON_THE_LOOP with the reason: {sorted(on_loop)}"
    )
    # and the allowlist names nothing that is gone
    paths = {path for path, _, _ in _loop_handlers(APP)}
    assert set(ON_THE_LOOP) <= paths, sorted(set(ON_THE_LOOP) - paths)
