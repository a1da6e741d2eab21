"""Users, roles, passwords and bearer tokens.

Passwords are argon2id hashes (argon2-cffi). Usernames and emails are unique
case-insensitively. Tokens are random, shown once and stored only as SHA-256 digests, with an
expiry; verifying one never needs the plaintext on disk.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import threading
import time

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_USER = "user"
_TOKEN = "token"
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class Role(enum.StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"


class User(msgspec.Struct, kw_only=True):
    id: int
    username: str
    email: str = ""
    role: Role = Role.VIEWER
    password_hash: str = ""
    sites: list[int] = []  # grants for analysts and viewers; admins see every site
    created_at: float = 0.0


class Token(msgspec.Struct, kw_only=True):
    user_id: int
    username: str
    expires_at: float
    kind: str = "session"


class AccountError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, store, records, *, min_password_length: int, token_ttl_seconds: int) -> None:
        self._store = store
        self._records = records
        self._min_password = min_password_length
        self._token_ttl = token_ttl_seconds
        self._hasher = PasswordHasher()
        self._lock = threading.Lock()
        # A hash to verify against when the user does not exist, so timing does not tell.
        self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    # -- users ----------------------------------------------------------------------------
    def get(self, username: str) -> User | None:
        raw = self._records.get(_USER, username.lower())
        return msgspec.msgpack.decode(raw, type=User) if raw is not None else None

    def list(self) -> list[User]:
        return sorted(
            (msgspec.msgpack.decode(raw, type=User) for _, raw in self._records.scan(_USER)),
            key=lambda user: user.id,
        )

    def count(self) -> int:
        return sum(1 for _ in self._records.scan(_USER))

    def create(self, username: str, password: str, role: str, email: str = "") -> User:
        if not _USERNAME.match(username or ""):
            raise AccountError("username", "2-64 letters, digits or _.@- required")
        if email and not _EMAIL.match(email):
            raise AccountError("email", "not a valid email address")
        if len(password or "") < self._min_password:
            raise AccountError("password", f"must be at least {self._min_password} characters")
        try:
            role = Role(role)
        except ValueError:
            raise AccountError("role", "must be one of admin, analyst, viewer") from None
        password_hash = self._hasher.hash(password)
        with self._lock:
            if self.get(username) is not None:
                raise AccountError("username", "already taken")
            if email and any(u.email.lower() == email.lower() for u in self.list()):
                raise AccountError("email", "already in use")

            def create(txn):
                user = User(
                    id=self._records.next_id(txn, "user"),
                    username=username,
                    email=email,
                    role=role,
                    password_hash=password_hash,
                    created_at=time.time(),
                )
                self._records.put(txn, _USER, username.lower(), msgspec.msgpack.encode(user))
                return user

            return self._store.write(create)

    def save(self, user: User) -> None:
        self._store.write(
            lambda txn: self._records.put(txn, _USER, user.username.lower(), msgspec.msgpack.encode(user))
        )

    def verify_password(self, username: str, password: str) -> User | None:
        user = self.get(username or "")
        try:
            if user is None:
                self._hasher.verify(self._dummy_hash, password or "")
                return None
            self._hasher.verify(user.password_hash, password or "")
            return user
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None

    # -- tokens ---------------------------------------------------------------------------
    def issue_token(self, user: User, ttl_seconds: int | None = None, kind: str = "session") -> str:
        token = "ff_" + secrets.token_urlsafe(32)
        record = Token(
            user_id=user.id,
            username=user.username,
            expires_at=time.time() + (ttl_seconds or self._token_ttl),
            kind=kind,
        )
        self._store.write(
            lambda txn: self._records.put(txn, _TOKEN, _digest(token), msgspec.msgpack.encode(record))
        )
        return token

    def user_for_token(self, token: str) -> User | None:
        if not token:
            return None
        raw = self._records.get(_TOKEN, _digest(token))
        if raw is None:
            return None
        record = msgspec.msgpack.decode(raw, type=Token)
        if record.expires_at < time.time():
            return None
        return self.get(record.username)

    def revoke_token(self, token: str) -> bool:
        return self._store.write(lambda txn: self._records.delete(txn, _TOKEN, _digest(token)))
