"""Rendering a dashboard page: the template plus the navigation context every page shares
(who is signed in, which admin links to show, whether this is a read-only visit)."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request
from litestar.response import Template

from appliance.accounts.permissions import Permission
from web.auth import principal_of
from web.dependencies import provide_appliance
from web.exports import export_formats
from web.rendering import RenderedTemplate


def nav(request: Request) -> dict[str, Any]:
    principal = principal_of(request)
    user = principal.user if principal is not None else None
    return {
        "user": user,
        "is_admin": bool(user and user.can(Permission.MANAGE_USERS)),
        "can_manage_settings": bool(user and user.can(Permission.MANAGE_SETTINGS)),
        "can_manage_sites": bool(user and user.can(Permission.MANAGE_SITES)),
        "can_define": bool(user and user.can(Permission.DEFINE)),
        # a public dashboard or a shared link: read-only, no account, no admin links
        "visiting": principal is not None and user is None,
        "standby_of": _standby_of(request),
        "export_formats": export_formats(provide_appliance(request)),  # the Export menus' choices
    }


def _standby_of(request: Request) -> str:
    """The primary this server follows ("" on a primary): every page says it is read-only."""
    appliance = getattr(request.app.state, "appliance", None)
    return appliance.follower.primary if appliance is not None and appliance.following else ""


def page(request: Request, name: str, status: int = 200, **context: Any) -> Template:
    return RenderedTemplate(
        request, f"dashboard/{name}", {**nav(request), **context}, media_type=MediaType.HTML, status_code=status
    )
