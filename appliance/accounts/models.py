"""The accounts' records: users and the credentials they hold, stored as MessagePack.

A credential is kept only as the SHA-256 :func:`digest` of its secret. How they are made,
checked, expired and revoked is :mod:`appliance.accounts.users`.
"""

from __future__ import annotations

import hashlib

import msgspec

from appliance.accounts.permissions import ROLE_PERMISSIONS, Permission, Role
from appliance.errors import DomainError


class User(msgspec.Struct, kw_only=True):
    id: int
    username: str
    email: str = ""
    role: Role = Role.VIEWER
    password_hash: str = ""
    sites: list[int] = []  # grants for analysts and viewers; admins see every site
    created_at: float = 0.0

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    def can_read_site(self, site_id: int) -> bool:
        return self.role is Role.ADMIN or site_id in self.sites


class Token(msgspec.Struct, kw_only=True):
    user_id: int
    username: str
    expires_at: float
    kind: str = "session"


class ApiKey(msgspec.Struct, kw_only=True):
    id: int
    user_id: int
    username: str
    name: str
    prefix: str  # the first characters of the key, to recognise it in a list
    read_only: bool = False
    created_at: float = 0.0
    expires_at: float = 0.0  # 0: never


class Session(msgspec.Struct, kw_only=True):
    user_id: int
    username: str
    csrf_token: str
    created_at: float
    expires_at: float  # idle expiry, pushed back while the session is used
    absolute_expires_at: float


class AccountError(DomainError):
    """A user, credential or role that cannot be made or changed as asked."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
