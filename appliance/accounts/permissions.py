"""Roles and the permission matrix: which role may do what.

It is domain, not web: the web room's guards (``web/auth.py``) ask for a :class:`Permission`
and the matrix answers; docs/security.md shows the same table, and a test holds them
together.
"""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"


class Permission(enum.StrEnum):
    """What a request needs. Site-scoped permissions also need a grant for the site."""

    VIEW_STATS = "view_stats"  # dashboards, reports, stats, live view of granted sites
    USE_ACCOUNT = "use_account"  # list own sites, manage own API keys, log out
    DEFINE = "define"  # goals, funnels, segments
    EXPORT_EVENTS = "export_events"  # raw event export
    MANAGE_SITES = "manage_sites"  # create, change, delete sites; shared links
    MANAGE_USERS = "manage_users"  # create, change, delete users; every API key
    MANAGE_SETTINGS = "manage_settings"  # plugins and settings
    READ_AUDIT = "read_audit"  # the audit log


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.ANALYST: frozenset(
        {Permission.VIEW_STATS, Permission.USE_ACCOUNT, Permission.DEFINE, Permission.EXPORT_EVENTS}
    ),
    Role.VIEWER: frozenset({Permission.VIEW_STATS, Permission.USE_ACCOUNT}),
}
