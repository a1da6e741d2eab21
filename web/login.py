"""Dashboard login: the login page, ``POST /login``, ``POST /logout`` and the account page.

A login lands on the site list, or on the ``next=`` page that sent the browser here when it
is a path on this origin (:func:`safe_next`: never an open redirect).

A successful login starts a server-side session (an LMDB record; the cookie holds only a
random id) and sets the ``footfall_session`` cookie: HttpOnly, SameSite=Lax, Secure when the
client came over TLS. The login form itself carries a CSRF token (a double-submit cookie),
so another site cannot log a browser into an account of its choosing; after login every
unsafe dashboard request needs the session's CSRF token (see :mod:`web.auth`). Logging out
deletes the session record, so a copied cookie stops working too. Dashboard controllers
declare ``guards=[requires_dashboard_user]`` (or ``dashboard_site_viewer`` ...) and templates
call ``csrf_token()`` / ``csrf_field()``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

from litestar import Controller, MediaType, Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.exceptions import NotAuthorizedException
from litestar.response import Redirect, Template
from markupsafe import Markup, escape

from web.auth import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    LoginRequired,
    LoginThrottled,
    csrf_token,
    is_https,
    new_login_csrf,
    principal_of,
    requires_dashboard_user,
    session_principal,
    throttled_login,
    tokens_match,
)
from web.dashboard import _nav as dashboard_nav
from web.dependencies import ApplianceDep, FormDep
from web.rendering import RenderedTemplate

DEFAULT_NEXT = "/sites"  # a login lands on the site list
_NO_RETURN = ("/login", "/logout")  # never back to the form itself


def safe_next(target: str | None) -> str:
    """Where a login may go next: only a path on this origin, else the site list.

    Never an open redirect: not ``//evil.example`` or ``https://...``, and no backslash or
    control character either (browsers read ``/\\evil.example`` as ``//evil.example`` and drop
    tabs and newlines, so ``/<TAB>/evil.example`` would become one too)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return DEFAULT_NEXT
    if "\\" in target or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return DEFAULT_NEXT
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path in _NO_RETURN:
        return DEFAULT_NEXT
    return target


def _login_page(request: Request, *, error: str = "", status: int = 200, username: str = "",
                headers: dict[str, str] | None = None) -> Template:
    token = new_login_csrf(request)
    return RenderedTemplate(
        request,
        "login.html",
        context={"error": error, "username": username, "next": safe_next(request.query_params.get("next")),
                 "csrf": token},
        status_code=status,
        headers=headers,
        cookies=[Cookie(key=LOGIN_CSRF_COOKIE, value=token, httponly=True, samesite="lax",
                        secure=is_https(request), path="/login", max_age=3600)],
        media_type=MediaType.HTML,
    )


class SessionController(Controller):
    path = "/"
    include_in_schema = False

    @get("/login", summary="The login page", sync_to_thread=True)
    def login_page(self, request: Request) -> Response:
        try:
            principal = session_principal(request)
        except NotAuthorizedException:
            principal = None
        if principal is not None and principal.session is not None:
            return Redirect(safe_next(request.query_params.get("next")), status_code=303)
        return _login_page(request)

    @post("/login", summary="Log in with a username and password (form)", sync_to_thread=True)
    def login(self, request: Request, appliance: ApplianceDep, form: FormDep) -> Response:
        form = form
        username = str(form.get("username", ""))
        password = str(form.get("password", ""))
        if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE, ""), str(form.get(CSRF_FIELD, ""))):
            return _login_page(request, error="The form expired. Please try again.", status=403, username=username)
        try:
            user = throttled_login(request, username, password)
        except LoginThrottled as throttled:  # the login page again, not the API's JSON 429
            wait = f"{throttled.seconds} second{'' if throttled.seconds == 1 else 's'}"
            return _login_page(request, error=f"Too many attempts; try again in {wait}.", status=429,
                               username=username, headers={"Retry-After": str(throttled.seconds)})
        if user is None:
            return _login_page(request, error="Wrong username or password.", status=401, username=username)
        session_id, _ = appliance.accounts.create_session(user)
        settings = appliance.settings
        target = safe_next(str(form.get("next", "")) or request.query_params.get("next"))
        return Redirect(
            target,
            status_code=303,
            cookies=[
                Cookie(key=SESSION_COOKIE, value=session_id, httponly=True, samesite="lax",
                       secure=is_https(request), path="/", max_age=settings.auth.session_max_seconds),
                Cookie(key=LOGIN_CSRF_COOKIE, value="", path="/login", max_age=0, expires=0),
            ],
        )

    @post("/logout", guards=[requires_dashboard_user], summary="Log out: the session ends on the server", sync_to_thread=True)
    def logout(self, request: Request, appliance: ApplianceDep) -> Response:
        appliance.accounts.end_session(request.cookies.get(SESSION_COOKIE, ""))
        return Redirect(
            "/login",
            status_code=303,
            cookies=[Cookie(key=SESSION_COOKIE, value="", path="/", max_age=0, expires=0, httponly=True,
                            samesite="lax", secure=is_https(request))],
        )

    @get("/account", guards=[requires_dashboard_user], summary="The signed-in user's account page", sync_to_thread=True)
    def account(self, request: Request, appliance: ApplianceDep) -> Template:
        principal = principal_of(request)
        sites = appliance.sites
        readable = [site.domain for site in sites.all() if principal.user.can_read_site(site.id)]
        return RenderedTemplate(
            request,
            "account.html",
            context={**dashboard_nav(request), "sites": readable},
            media_type=MediaType.HTML,
        )


def login_required_handler(request: Request, exc: LoginRequired) -> Response:
    """A dashboard route without a session: htmx gets 401 with ``HX-Redirect``, a browser a
    303 to the login page that comes back here afterwards."""
    target = "/login?next=" + quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""), safe="/")
    if request.headers.get("hx-request") == "true":
        return Response({"status": "error", "error": {"field": None, "message": str(exc.detail)}},
                        status_code=401, headers={"HX-Redirect": target}, media_type=MediaType.JSON)
    return Redirect(target, status_code=303)


def register_template_helpers(engine: Any) -> None:
    """``csrf_token()`` and ``csrf_field()`` for dashboard templates (forms and htmx)."""

    def token(context) -> str:
        return csrf_token(context["request"])

    def field(context) -> Markup:
        return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token(context)))

    engine.register_template_callable("csrf_token", token)
    engine.register_template_callable("csrf_field", field)
