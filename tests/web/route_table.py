"""The app's route table and the access rules ``docs/security.md`` writes down for it.

Shared by the static check (``tests/web/test_route_guards.py``: every route declares the
guard the docs name) and the live matrix (``tests/e2e/test_access_matrix.py``: every route
answers each kind of caller as the docs say).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from litestar.routes import HTTPRoute

from appliance.accounts.permissions import ROLE_PERMISSIONS, Permission, Role
from web.auth import Guard

DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"

# Routes anyone may call: named in the docs' prose; listed here so the check is explicit.
PUBLIC = {
    ("POST", "/api/v1/authenticate"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/healthz"),
    ("GET", "/api/v1/health/live"),
    ("GET", "/ready"),
    ("GET", "/js/footfall.js"),
    ("GET", "/js/{script:str}"),
    ("GET", "/script.js"),
    ("GET", "/favicon.ico"),
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
}
PUBLIC_PREFIXES = ("/schema", "/static/")  # the OpenAPI document and its UI; vendored assets


@dataclass(frozen=True)
class Rule:
    permission: Permission
    site: bool
    dashboard: bool
    password_login: bool
    open_to_links: bool  # shared links and anonymous visitors of a public site are let in


@dataclass(frozen=True)
class RouteEntry:
    method: str
    path: str
    guards: tuple  # every Guard declared on the handler's layers


def app_routes(app) -> list[RouteEntry]:
    """Every (method, path) of the app's HTTP handlers, without Litestar's automatic OPTIONS."""
    entries = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue  # the ingest ASGI handlers: public, and answered without Litestar
        for handler in route.route_handlers:
            if handler.handler_name == "options_handler":
                continue
            guards = tuple(g for layer in handler.ownership_layers for g in (layer.guards or []))
            for method in sorted(handler.http_methods):
                entries.append(RouteEntry(method, route.path, guards))
    return entries


def is_public(method: str, path: str) -> bool:
    return (method, path) in PUBLIC or path.startswith(PUBLIC_PREFIXES)


def documented_rules() -> dict[tuple[str, str], Rule]:
    """The route table of docs/security.md: (method, path) -> Rule."""
    rules = {}
    row = re.compile(r"^\|\s*`(GET|POST|PUT|PATCH|DELETE) ([^`]+)`\s*\|\s*(\w+)\s*\|\s*(yes|no)\s*\|\s*([^|]+)\|")
    for line in DOCS.read_text().splitlines():
        if match := row.match(line):
            method, path, permission, site, credential = match.groups()
            rules[(method, path)] = Rule(
                permission=Permission(permission),
                site=site == "yes",
                dashboard="dashboard" in credential,
                password_login="password login" in credential,
                # a site's stats are open to its shared link and, on a public site, to anyone,
                # unless the row says the route is for signed-in users only
                open_to_links=(site == "yes" and Permission(permission) is Permission.VIEW_STATS
                               and "signed-in users" not in credential),
            )
    return rules


def documented_role_permissions() -> dict[Role, set[Permission]]:
    """The roles-and-permissions table of docs/security.md."""
    granted: dict[Role, set[Permission]] = {role: set() for role in Role}
    row = re.compile(r"^\|\s*`(\w+)`\s*\|[^|]*\|([^|]*)\|([^|]*)\|([^|]*)\|")
    for line in DOCS.read_text().splitlines():
        if match := row.match(line):
            permission = Permission(match.group(1))
            for role, cell in zip((Role.ADMIN, Role.ANALYST, Role.VIEWER), match.groups()[1:], strict=True):
                if "✓" in cell:
                    granted[role].add(permission)
    return granted


def rule_of(entry: RouteEntry) -> Rule | None:
    """The rule the route's own guard declares (None without a Guard)."""
    ours = [guard for guard in entry.guards if isinstance(guard, Guard)]
    if not ours:
        return None
    guard = ours[-1]  # the innermost (handler-level) guard is the specific one
    return Rule(guard.permission, guard.site, guard.dashboard, guard.password_login, guard.open_to_links)


def docs_row(entry: RouteEntry, rule: Rule) -> str:
    """The docs/security.md row that describes ``rule`` for ``entry`` (for failure messages)."""
    credential = "dashboard" if rule.dashboard else "api" + (", password login" if rule.password_login else "")
    if rule.site and rule.permission is Permission.VIEW_STATS and not rule.open_to_links:
        credential += ", signed-in users"
    site = "yes" if rule.site else "no"
    return f"| `{entry.method} {entry.path}` | {rule.permission} | {site} | {credential} |"


def role_has(role: Role, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[role]
