"""The JSON API's accounts: authentication, who the caller is, users and API keys.

Admin actions are written to the audit log (:func:`audit`). Guards (:mod:`web.auth`) resolve
the caller; handlers never check roles.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.exceptions import NotAuthorizedException, NotFoundException
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from appliance.accounts.models import ApiKey, User
from appliance.query.spec import QueryError
from appliance.runtime.appliance import Appliance
from web.auth import (
    can_manage_api_keys,
    can_manage_users,
    principal_of,
    requires_user,
    throttled_login,
)
from web.dependencies import ApplianceDep
from web.openapi import error_responses


class AuthenticateBody(msgspec.Struct, kw_only=True):
    username: str
    password: str
    expires_in: int | None = None  # seconds; at most auth.token_ttl_seconds


class CreateUserBody(msgspec.Struct, kw_only=True):
    username: str
    password: str
    role: str = "viewer"
    email: str = ""
    sites: list[str] = []


class ChangeUserBody(msgspec.Struct, kw_only=True):
    role: str | None = None
    email: str | None = None
    sites: list[str] | None = None
    password: str | None = None


class CreateApiKeyBody(msgspec.Struct, kw_only=True):
    name: str
    read_only: bool = False
    expires_in_days: int | None = None


def audit(appliance: Appliance, request: Request, action: str, target: str = "", **details: Any) -> None:
    principal = principal_of(request)
    actor = principal.name if principal is not None else "(anonymous)"
    appliance.audit.record(actor, action, target, **details)


def site_ids(appliance: Appliance, domains: list[str]) -> list[int]:
    ids = []
    for domain in domains:
        site = appliance.sites.get(domain)
        if site is None:
            raise QueryError("sites", f"unknown site {domain!r}")
        ids.append(site.id)
    return ids


def _user_view(appliance: Appliance, user: User) -> dict[str, Any]:
    sites = appliance.sites
    return {
        "user_id": f"user{user.id}",
        "username": user.username,
        "email": user.email,
        "role": str(user.role),
        "sites": [site.domain for site in map(sites.by_id, user.sites) if site is not None],
        "created_at": user.created_at,
    }


def _key_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "username": key.username,
        "read_only": key.read_only,
        "created_at": key.created_at,
        "expires_at": key.expires_at or None,
    }


class AuthController(Controller):
    path = "/api/v1"
    tags = ["users"]

    @post(
        "/authenticate",
        status_code=HTTP_200_OK,
        summary="Exchange a username and password for a bearer token",
        description="Throttled per client IP and per username: 429 with Retry-After.", sync_to_thread=True,
        responses=error_responses(401, 429),
    )
    def authenticate(self, request: Request, appliance: ApplianceDep, data: JSONBody[AuthenticateBody]) -> dict[str, Any]:
        user = throttled_login(request, data.username, data.password)
        if user is None:
            raise NotAuthorizedException("wrong username or password")
        accounts = appliance.accounts
        ttl = accounts.token_ttl if data.expires_in is None else max(1, min(data.expires_in, accounts.token_ttl))
        token = accounts.issue_token(user, ttl)
        return {"status": "success", "token": token, "expires_in": ttl}


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["users"]
    guards = [requires_user]

    @get("/", summary="Who the caller is: user, role, readable sites, credential kind", sync_to_thread=True)
    def me(self, request: Request, appliance: ApplianceDep) -> dict[str, Any]:
        principal = principal_of(request)
        data = _user_view(appliance, principal.user)
        data["credential"] = principal.via
        data["read_only"] = principal.read_only
        return {"status": "success", "data": data}


class UserController(Controller):
    path = "/api/v1/users"
    tags = ["users"]
    guards = [can_manage_users]

    @post("/", status_code=HTTP_201_CREATED, summary="Create a user (admin only)", sync_to_thread=True)
    def create_user(self, request: Request, appliance: ApplianceDep, data: JSONBody[CreateUserBody]) -> dict[str, Any]:
        sites = site_ids(appliance, data.sites)
        user = appliance.accounts.create(data.username, data.password, data.role, data.email, sites)
        audit(appliance, request, "user.create", user.username, role=str(user.role), sites=data.sites)
        return {"status": "success", "user_id": f"user{user.id}"}

    @get("/", summary="List users (admin only)", sync_to_thread=True)
    def list_users(self, appliance: ApplianceDep) -> dict[str, Any]:
        users = appliance.accounts.list()
        return {"status": "success", "data": [_user_view(appliance, user) for user in users]}

    @get("/{username:str}", summary="One user (admin only)", sync_to_thread=True)
    def get_user(self, appliance: ApplianceDep, username: FromPath[str]) -> dict[str, Any]:
        user = appliance.accounts.get(username)
        if user is None:
            raise NotFoundException(f"no such user: {username!r}")
        return {"status": "success", "data": _user_view(appliance, user)}

    @patch("/{username:str}", summary="Change a user's role, email, site grants or password (admin only)", sync_to_thread=True)
    def change_user(self, request: Request, appliance: ApplianceDep, username: FromPath[str], data: JSONBody[ChangeUserBody]) -> dict[str, Any]:
        accounts = appliance.accounts
        sites = site_ids(appliance, data.sites) if data.sites is not None else None
        if data.password is not None:
            accounts.set_password(username, data.password)
            audit(appliance, request, "user.reset_password", username)
        user = accounts.update(username, role=data.role, email=data.email, sites=sites)
        changes = {k: v for k, v in msgspec.to_builtins(data).items() if v is not None and k != "password"}
        if changes:
            audit(appliance, request, "user.update", user.username, **changes)
        return {"status": "success", "data": _user_view(appliance, user)}

    @delete("/{username:str}", status_code=HTTP_200_OK, summary="Delete a user and their credentials (admin only)", sync_to_thread=True)
    def delete_user(self, request: Request, appliance: ApplianceDep, username: FromPath[str]) -> dict[str, Any]:
        user = appliance.accounts.delete(username)
        audit(appliance, request, "user.delete", user.username)
        return {"status": "success"}

    @get("/{username:str}/apikeys", summary="A user's API keys (admin only)", sync_to_thread=True)
    def user_api_keys(self, appliance: ApplianceDep, username: FromPath[str]) -> dict[str, Any]:
        accounts = appliance.accounts
        user = accounts.get(username)
        if user is None:
            raise NotFoundException(f"no such user: {username!r}")
        return {"status": "success", "data": [_key_view(k) for k in accounts.api_keys(user.id)]}

    @delete("/{username:str}/apikeys/{key_id:int}", status_code=HTTP_200_OK, summary="Revoke any user's API key (admin only)", sync_to_thread=True)
    def revoke_user_api_key(self, request: Request, appliance: ApplianceDep, username: FromPath[str], key_id: FromPath[int]) -> dict[str, Any]:
        accounts = appliance.accounts
        user = accounts.get(username)
        key = accounts.revoke_api_key(key_id, user.id) if user is not None else None
        if key is None:
            raise NotFoundException(f"no API key {key_id} of {username!r}")
        audit(appliance, request, "apikey.revoke", f"{key.username}/{key.id}", name=key.name)
        return {"status": "success"}


class ApiKeyController(Controller):
    path = "/api/v1/apikeys"
    tags = ["users"]
    guards = [can_manage_api_keys]

    @post("/", status_code=HTTP_201_CREATED, summary="Create an API key for yourself (shown once)", sync_to_thread=True)
    def create_api_key(self, request: Request, appliance: ApplianceDep, data: JSONBody[CreateApiKeyBody]) -> dict[str, Any]:
        user = principal_of(request).user
        key, record = appliance.accounts.create_api_key(
            user, data.name, read_only=data.read_only, expires_in_days=data.expires_in_days
        )
        audit(appliance, request, "apikey.create", f"{user.username}/{record.id}", name=record.name, read_only=record.read_only)
        return {"status": "success", "key": key, "data": _key_view(record)}

    @get("/", summary="Your API keys (never the keys themselves)", sync_to_thread=True)
    def list_api_keys(self, request: Request, appliance: ApplianceDep) -> dict[str, Any]:
        keys = appliance.accounts.api_keys(principal_of(request).user.id)
        return {"status": "success", "data": [_key_view(key) for key in keys]}

    @delete("/{key_id:int}", status_code=HTTP_200_OK, summary="Revoke one of your API keys", sync_to_thread=True)
    def revoke_api_key(self, request: Request, appliance: ApplianceDep, key_id: FromPath[int]) -> dict[str, Any]:
        user = principal_of(request).user
        key = appliance.accounts.revoke_api_key(key_id, user.id)
        if key is None:
            raise NotFoundException(f"you have no API key {key_id}")
        audit(appliance, request, "apikey.revoke", f"{user.username}/{key.id}", name=key.name)
        return {"status": "success"}


ACCOUNT_CONTROLLERS = [AuthController, MeController, UserController, ApiKeyController]
