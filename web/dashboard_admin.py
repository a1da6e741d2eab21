"""The dashboard's admin pages: users and their API keys, and the loaded plugins."""

from __future__ import annotations

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from appliance.accounts.models import AccountError
from appliance.accounts.permissions import Permission
from appliance.hooks.manager import describe_plugins
from appliance.runtime.appliance import Appliance
from web.auth import Guard, dashboard_admin, principal_of
from web.dependencies import ApplianceDep, FormDep
from web.pages import page as _page

dashboard_settings_admin = Guard(Permission.MANAGE_SETTINGS, dashboard=True)


class AdminController(Controller):
    """Users and their API keys, and the loaded plugins (admins only)."""

    path = "/admin"
    include_in_schema = False

    @get("/users", guards=[dashboard_admin], summary="Users and API keys (admin)", sync_to_thread=True)
    def users(self, request: Request, appliance: ApplianceDep) -> Template:
        return _users_page(request, appliance)

    @post("/users", guards=[dashboard_admin], summary="Create a user (admin)", sync_to_thread=True)
    def create_user(self, request: Request, appliance: ApplianceDep, form: FormDep) -> Response:
        domains = form.getall("sites", [])
        site_ids = [site.id for site in appliance.sites.all() if site.domain in domains]
        try:
            user = appliance.accounts.create(
                str(form.get("username", "")), str(form.get("password", "")), str(form.get("role", "viewer")),
                str(form.get("email", "")), site_ids,
            )
        except AccountError as error:
            return _users_page(request, appliance, error=error.message if hasattr(error, "message") else str(error), status=422)
        appliance.audit.record(principal_of(request).name, "user.create", user.username, role=str(user.role), via="dashboard")
        return Redirect("/admin/users?created=" + user.username, status_code=303)

    @post("/users/{username:str}/apikeys/{key_id:int}/revoke", guards=[dashboard_admin], summary="Revoke a user's API key (admin)", sync_to_thread=True)
    def revoke_key(self, request: Request, appliance: ApplianceDep, username: FromPath[str], key_id: FromPath[int]) -> Response:
        user = appliance.accounts.get(username)
        key = appliance.accounts.revoke_api_key(key_id, user.id) if user is not None else None
        if key is None:
            raise NotFoundException(f"no API key {key_id} of {username!r}")
        appliance.audit.record(principal_of(request).name, "apikey.revoke", f"{username}/{key_id}", via="dashboard")
        return Redirect("/admin/users", status_code=303)

    @get("/plugins", guards=[dashboard_settings_admin], summary="Loaded plugins (admin)", sync_to_thread=True)
    def plugins(self, request: Request, appliance: ApplianceDep) -> Template:
        plugins = describe_plugins(appliance.plugin_manager)
        return _page(request, "plugins.html", plugins=plugins)


def _users_page(request: Request, appliance: Appliance, error: str = "", status: int = 200) -> Template:
    sites = {site.id: site.domain for site in appliance.sites.all()}
    keys = appliance.accounts.api_keys()
    users = [
        {"user": user, "sites": [sites[i] for i in user.sites if i in sites],
         "api_keys": [key for key in keys if key.user_id == user.id]}
        for user in appliance.accounts.list()
    ]
    return _page(request, "users.html", users=users, all_sites=sorted(sites.values()), error=error,
                 status=status, created=request.query_params.get("created", ""))
