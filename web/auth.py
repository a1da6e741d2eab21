"""Authentication and guards: bearer tokens for the API.

Guards are declared on controllers (class level), never checked ad hoc in handlers. A guard
resolves the caller once and leaves it in ``connection.state.user``.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from appliance.accounts import Role, User
from appliance.models import Site


def _bearer(connection: ASGIConnection) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def current_user(connection: ASGIConnection) -> User | None:
    cached = connection.scope.get("state", {}).get("user")
    if cached is not None:
        return cached
    appliance = connection.app.state.appliance
    user = appliance.accounts.user_for_token(_bearer(connection))
    if user is not None:
        connection.state.user = user
    return user


def requires_user(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if current_user(connection) is None:
        raise NotAuthorizedException("a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})


def requires_admin(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    user = current_user(connection)
    if user is None:
        raise NotAuthorizedException("a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    if user.role is not Role.ADMIN:
        raise PermissionDeniedException("admin role required")


def can_read_site(user: User, site: Site) -> bool:
    return user.role is Role.ADMIN or site.id in user.sites
