"""Authentication and access control: who is calling, and the guards that decide what they may do.

Every protected route declares a :class:`Guard` (on its controller, or on the handler when one
route of a controller differs); handlers never check roles themselves. A guard names the
:class:`~appliance.accounts.users.Permission` the route needs, whether it reads one site (named by
the ``{domain}`` path parameter or the ``site`` query parameter) and whether it is a JSON API
route (bearer credentials) or a dashboard route (the session cookie, plus a CSRF token on
every unsafe request). It resolves the caller once into a :class:`Principal` and the site
into ``connection.state``, where handlers read them with :func:`principal_of` and
:func:`site_of`.

Credentials:

- API: ``Authorization: Bearer`` with a login token (``ff_``), an API key (``ffk_``) or a
  shared-link token (``ffs_``, read-only, one site; also accepted as ``?auth=``).
- Dashboard: the ``footfall_session`` cookie (HttpOnly, SameSite=Lax, Secure behind TLS),
  or a shared-link token in ``?auth=``. Bearer tokens are not accepted there, and the session
  cookie is not accepted by the JSON API, so a cross-site request cannot ride on it.

A credential that is presented but invalid (expired, revoked, forged) is always a 401, even
where an anonymous caller would be let in (a public site).
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import FormMultiDict
from litestar.exceptions import (
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers.base import BaseRouteHandler

from appliance.accounts.models import ApiKey, Session, User
from appliance.accounts.permissions import Permission, Role
from appliance.models import Site
from appliance.query.spec import QueryError
from appliance.ratelimit import retry_after

SESSION_COOKIE = "footfall_session"
LOGIN_CSRF_COOKIE = "footfall_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PRINCIPAL = "footfall_principal"
_SITE = "footfall_site"
_BEARER = {"WWW-Authenticate": "Bearer"}


class Principal(msgspec.Struct, kw_only=True):
    """The caller of one request, however they proved it."""

    via: str  # "token", "apikey", "session", "share" or "public"
    user: User | None = None
    read_only: bool = False
    site_id: int | None = None  # the one site of a shared link or a public dashboard
    session: Session | None = None
    api_key: ApiKey | None = None

    @property
    def name(self) -> str:
        return self.user.username if self.user is not None else f"({self.via})"


class LoginRequired(NotAuthorizedException):
    """A dashboard route without a valid session: answered with a redirect to the login page."""


def _appliance(connection: ASGIConnection):
    return connection.app.state.appliance


def _state(connection: ASGIConnection) -> dict[str, Any]:
    return connection.scope.setdefault("state", {})  # type: ignore[typeddict-item]


def _bearer(connection: ASGIConnection) -> str:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def client_ip(connection: ASGIConnection) -> str:
    return connection.app.state.client_address(connection.scope)


def is_https(connection: ASGIConnection) -> bool:
    """Whether the client reached us over TLS: directly, via a trusted proxy's
    ``X-Forwarded-Proto``, or as the configured public URL says."""
    if connection.scope.get("scheme") == "https":
        return True
    if _appliance(connection).settings.server.public_url.startswith("https://"):
        return True
    client = connection.scope.get("client")
    peer = client[0] if client else ""
    return connection.app.state.client_address.is_trusted_proxy(peer) and (
        connection.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() == "https"
    )


# -- credentials -------------------------------------------------------------------------------
def _share_principal(connection: ASGIConnection, token: str) -> Principal | None:
    site = _appliance(connection).sites.site_for_share_token(token)
    return Principal(via="share", read_only=True, site_id=site.id) if site is not None else None


def _resolve_token(connection: ASGIConnection, token: str) -> Principal | None:
    accounts = _appliance(connection).accounts
    if token.startswith("ffk_"):
        found = accounts.user_for_api_key(token)
        if found is None:
            return None
        user, key = found
        return Principal(via="apikey", user=user, read_only=key.read_only, api_key=key)
    if token.startswith("ffs_"):
        return _share_principal(connection, token)
    user = accounts.user_for_token(token)
    return Principal(via="token", user=user) if user is not None else None


def api_principal(connection: ASGIConnection) -> Principal | None:
    """The API caller from the bearer token (or a shared-link ``?auth=``); None if anonymous.

    Raises 401 when a credential is presented but is not valid.
    """
    state = _state(connection)
    if _PRINCIPAL in state:
        return state[_PRINCIPAL]
    token = _bearer(connection)
    if not token and connection.query_params.get("auth", "").startswith("ffs_"):
        token = connection.query_params["auth"]
    principal = None
    if token:
        principal = _resolve_token(connection, token)
        if principal is None:
            raise NotAuthorizedException("the token is invalid, expired or revoked", headers=_BEARER)
    state[_PRINCIPAL] = principal
    return principal


def session_principal(connection: ASGIConnection) -> Principal | None:
    """The dashboard caller from the session cookie (or a shared-link ``?auth=``)."""
    state = _state(connection)
    if _PRINCIPAL in state:
        return state[_PRINCIPAL]
    principal = None
    session_id = connection.cookies.get(SESSION_COOKIE, "")
    if session_id:
        found = _appliance(connection).accounts.session(session_id)
        if found is None:
            raise LoginRequired("the session has ended; log in again")
        user, session = found
        principal = Principal(via="session", user=user, session=session)
    elif connection.query_params.get("auth", "").startswith("ffs_"):
        principal = _share_principal(connection, connection.query_params["auth"])
        if principal is None:
            raise LoginRequired("this shared link is no longer valid")
    state[_PRINCIPAL] = principal
    return principal


def current_user(connection: ASGIConnection) -> User | None:
    """The signed-in API user, or None (anonymous, a shared link, a bad token)."""
    try:
        principal = api_principal(connection)
    except NotAuthorizedException:
        return None
    return principal.user if principal is not None else None


def principal_of(connection: ASGIConnection) -> Principal | None:
    return _state(connection).get(_PRINCIPAL)


def site_of(connection: ASGIConnection) -> Site:
    """The site a site-scoped guard resolved and authorised for this request."""
    site = _state(connection).get(_SITE)
    if site is None:  # a handler asked for a site its route's guard did not check: fail closed
        raise PermissionDeniedException("no site was authorised for this route")
    return site


def sees_event_details(connection: ASGIConnection) -> bool:
    """Whether the caller may see an event's custom properties and other raw details (the
    analyst-level fields of :class:`appliance.live.LiveEvent`): a user allowed the raw event
    export. Viewers, shared links and anonymous visitors of a public site may not."""
    principal = principal_of(connection)
    return principal is not None and principal.user is not None and principal.user.can(Permission.EXPORT_EVENTS)


def can_read_site(user: User, site: Site) -> bool:
    return user.can_read_site(site.id)


class LoginThrottled(TooManyRequestsException):
    """A login refused by the throttle: the JSON API answers it as any 429 (JSON, Retry-After),
    the dashboard's login form renders the login page with the wait."""

    def __init__(self, seconds: int) -> None:
        super().__init__(f"too many login attempts; try again in {seconds} s", headers={"Retry-After": str(seconds)})
        self.seconds = seconds


def throttled_login(connection: ASGIConnection, username: str, password: str) -> User | None:
    """Verify a password behind the login throttle (per client IP, per username); the API's
    authenticate and the dashboard's login both come here. Raises :class:`LoginThrottled`
    (429 with Retry-After)."""
    throttle = connection.app.state.login_throttle
    wait = throttle.check(client_ip(connection), username)
    if wait:
        raise LoginThrottled(retry_after(wait))
    user = _appliance(connection).accounts.verify_password(username, password)
    if user is None:
        throttle.failed(username)
    else:
        throttle.succeeded(username)
    return user


# -- CSRF ------------------------------------------------------------------------------------
def csrf_token(connection: ASGIConnection) -> str:
    """The CSRF token a template puts in its forms (``name="csrf"``) and htmx sends as
    ``X-CSRF-Token``: the session's own token, or the login form's cookie before login."""
    principal = _state(connection).get(_PRINCIPAL)
    if principal is None:
        try:
            principal = session_principal(connection)
        except NotAuthorizedException:
            principal = None
    if principal is not None and principal.session is not None:
        return principal.session.csrf_token
    return _state(connection).get(LOGIN_CSRF_COOKIE) or connection.cookies.get(LOGIN_CSRF_COOKIE, "")


def new_login_csrf(connection: ASGIConnection) -> str:
    """The login form's CSRF token: the cookie's value, or a new one (the caller sets it)."""
    token = connection.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    _state(connection)[LOGIN_CSRF_COOKIE] = token
    return token


async def submitted_csrf(connection: ASGIConnection) -> str:
    header = connection.headers.get(CSRF_HEADER, "")
    if header:
        return header
    request = Request(connection.scope, connection.receive)
    form = await request.form()  # cached on the scope: the handler can read it again
    value = form.get(CSRF_FIELD, "")
    return value if isinstance(value, str) else ""


async def request_form(request: Request) -> FormMultiDict:
    """The ``form`` dependency: the request's parsed form, read on the event loop before a
    sync handler runs in its worker thread (the CSRF guard may already have cached it)."""
    return await request.form()


def tokens_match(expected: str, submitted: str) -> bool:
    return bool(expected) and bool(submitted) and secrets.compare_digest(expected, submitted)


# -- guards ------------------------------------------------------------------------------------
def _site_from_request(connection: ASGIConnection) -> str:
    params = connection.query_params  # ``site_id``: Plausible's name (web/api_plausible.py)
    return connection.path_params.get("domain") or params.get("site") or params.get("site_id") or ""


def _resolve_site(connection: ASGIConnection, principal: Principal | None) -> Site | None:
    """The site the request names; when it names none, the caller's only readable site."""
    sites = _appliance(connection).sites
    domain = _site_from_request(connection)
    if domain:
        return sites.get(domain)
    if principal is None:
        return None
    if principal.user is not None:
        readable = [site for site in sites.all() if principal.user.can_read_site(site.id)]
    else:
        readable = [site for site in sites.all() if site.id == principal.site_id]
    if len(readable) != 1:
        raise QueryError("site", "required: name the site's domain")
    return readable[0]


class Guard:
    """A route's access rule: the permission it needs, whether it reads one site, and whether
    it is a dashboard route (session cookie + CSRF) rather than a JSON API route (bearer)."""

    def __init__(
        self,
        permission: Permission,
        *,
        site: bool = False,
        dashboard: bool = False,
        password_login: bool = False,
        links: bool = True,
    ) -> None:
        self.permission = permission
        self.site = site
        self.dashboard = dashboard
        self.password_login = password_login  # refuse API keys (they may not mint more keys)
        # Anonymous callers (public sites) and shared links may only read a site's stats, and
        # not where the route is for signed-in users only (``links=False``: a site's settings).
        self.open_to_links = links and site and permission is Permission.VIEW_STATS

    def __repr__(self) -> str:
        where = "dashboard" if self.dashboard else "api"
        return f"Guard({self.permission}, site={self.site}, {where}, links={self.open_to_links})"

    def _unauthenticated(self, message: str) -> NotAuthorizedException:
        if self.dashboard:
            return LoginRequired(message)
        return NotAuthorizedException(message, headers=_BEARER)

    async def __call__(self, connection: ASGIConnection, _: BaseRouteHandler) -> None:
        unsafe = connection.scope.get("method", "GET") not in SAFE_METHODS
        principal = session_principal(connection) if self.dashboard else api_principal(connection)
        if principal is None:
            if self.open_to_links and not unsafe:
                site = _resolve_site(connection, None)
                if site is not None and site.public:
                    principal = Principal(via="public", read_only=True, site_id=site.id)
                    _state(connection)[_PRINCIPAL] = principal
                    _state(connection)[_SITE] = site
                    return
            raise self._unauthenticated("authentication required")
        if unsafe and principal.read_only:
            raise PermissionDeniedException("this credential is read-only")
        if (
            unsafe
            and principal.session is not None
            and not tokens_match(principal.session.csrf_token, await submitted_csrf(connection))
        ):
            raise PermissionDeniedException("missing or wrong CSRF token")
        if principal.user is None:  # a shared link or a public dashboard
            if not self.open_to_links:
                raise PermissionDeniedException("a shared link only opens its site's dashboard, not this page")
        else:
            if not principal.user.can(self.permission):
                raise PermissionDeniedException(
                    f"the {principal.user.role} role does not have the {self.permission} permission"
                )
            if self.password_login and principal.via == "apikey":
                raise PermissionDeniedException("API keys cannot manage API keys; log in with a password")
        if self.site:
            site = _resolve_site(connection, principal)
            if site is None:
                raise NotFoundException(f"unknown site {_site_from_request(connection)!r}")
            allowed = (
                principal.user.can_read_site(site.id) if principal.user is not None else site.id == principal.site_id
            )
            if not allowed:
                raise PermissionDeniedException("no access to this site")
            _state(connection)[_SITE] = site


# JSON API guards (bearer token, API key; shared links where a site's stats are read)
requires_user = Guard(Permission.USE_ACCOUNT)
can_manage_api_keys = Guard(Permission.USE_ACCOUNT, password_login=True)
can_view_site = Guard(Permission.VIEW_STATS, site=True)
can_define = Guard(Permission.DEFINE, site=True)
can_export_events = Guard(Permission.EXPORT_EVENTS, site=True)
can_manage_sites = Guard(Permission.MANAGE_SITES)
can_manage_site = Guard(Permission.MANAGE_SITES, site=True)
can_manage_users = Guard(Permission.MANAGE_USERS)
can_manage_settings = Guard(Permission.MANAGE_SETTINGS)
can_read_audit = Guard(Permission.READ_AUDIT)
requires_admin = can_manage_users  # the seed's name

# Dashboard guards (session cookie + CSRF; shared links on a site's pages)
requires_dashboard_user = Guard(Permission.USE_ACCOUNT, dashboard=True)
dashboard_site_viewer = Guard(Permission.VIEW_STATS, site=True, dashboard=True)
dashboard_site_member = Guard(Permission.VIEW_STATS, site=True, dashboard=True, links=False)  # no shared link
dashboard_site_analyst = Guard(Permission.DEFINE, site=True, dashboard=True)
dashboard_admin = Guard(Permission.MANAGE_USERS, dashboard=True)

__all__ = ["Guard", "Permission", "Principal", "Role"]
