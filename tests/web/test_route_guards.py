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
