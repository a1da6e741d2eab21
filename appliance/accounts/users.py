"""Users, passwords, and every kind of credential a user holds.

Passwords are argon2id hashes (argon2-cffi); usernames and emails are unique
case-insensitively. Three kinds of credential, each random, shown once and stored only as a
SHA-256 digest, so a copy of the database holds nothing that can be replayed:

- login tokens (``ff_...``) from ``POST /api/v1/authenticate``, which expire;
- API keys (``ffk_...``) a user creates, names, lists and revokes, optionally read-only;
- dashboard sessions, carried in a cookie, each with its own CSRF token.

A credential always resolves to the user *now*: a changed role or a deleted user takes
effect on the next request. Roles and the permission matrix are
:mod:`appliance.accounts.permissions`.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from appliance.accounts.models import AccountError, ApiKey, Session, Token, User, digest
from appliance.accounts.permissions import Role
from appliance.identifiers import control_character, normalised

_USER = "user"
_TOKEN = "token"
_API_KEY = "apikey"
_SESSION = "session"
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PURGE_EVERY_SECONDS = 3600
# A session is refreshed (its idle expiry pushed back) at most this often: one write per
# user per few minutes rather than one per page.
_SESSION_TOUCH_SECONDS = 300
#: argon2-cffi's default parameters (RFC 9106 low-memory); the password is nobody's
_UNKNOWN_USER_HASH = "$argon2id$v=19$m=65536,t=3,p=4$qW7ts/tvzxzLPSu1zIldhg$AOoIQl/1iVirWt5KAodOvBV2RleQoY5XaIFYIu9Cho4"


def _role(value: str | Role) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise AccountError("role", "must be one of admin, analyst, viewer") from None


class Accounts:
    def __init__(
        self,
        store,
        records,
        *,
        min_password_length: int,
        token_ttl_seconds: int,
        session_idle_seconds: int = 7 * 86_400,
        session_max_seconds: int = 30 * 86_400,
    ) -> None:
        self._store = store
        self._records = records
        self._min_password = min_password_length
        self.token_ttl = token_ttl_seconds
        self._session_idle = session_idle_seconds
        self._session_max = session_max_seconds
        self._hasher = PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory profile
        self._lock = threading.Lock()
        self._last_purge = 0.0
        # A hash to verify against when the user does not exist, so timing does not tell: made
        # with the hasher's parameters (hashing one at every start cost ~0.1 s of each open)
        self._dummy_hash = _UNKNOWN_USER_HASH
        if self._hasher.check_needs_rehash(_UNKNOWN_USER_HASH):  # other parameters: a hash of theirs
            self._dummy_hash = self._hasher.hash(secrets.token_hex(16))

    # -- users ----------------------------------------------------------------------------
    def get(self, username: str) -> User | None:
        raw = self._records.get(_USER, (username or "").lower())
        return msgspec.msgpack.decode(raw, type=User) if raw is not None else None

    def by_id(self, user_id: int) -> User | None:
        return next((user for user in self.list() if user.id == user_id), None)

    def list(self) -> list[User]:
        return sorted(
            (msgspec.msgpack.decode(raw, type=User) for _, raw in self._records.scan(_USER)),
            key=lambda user: user.id,
        )

    def count(self) -> int:
        return sum(1 for _ in self._records.scan(_USER))

    def _check_password(self, password: str) -> None:
        if len(password or "") < self._min_password:
            raise AccountError("password", f"must be at least {self._min_password} characters")

    def _check_email(self, email: str, user_id: int | None = None) -> None:
        if not email:
            return
        if problem := control_character(email):
            raise AccountError("email", problem)
        if not _EMAIL.fullmatch(email):
            raise AccountError("email", "not a valid email address")
        if any(u.email.lower() == email.lower() and u.id != user_id for u in self.list()):
            raise AccountError("email", "already in use")

    def create(
        self, username: str, password: str, role: str, email: str = "", sites: list[int] | None = None
    ) -> User:
        username = normalised(username)
        if problem := control_character(username):
            raise AccountError("username", problem)
        if not _USERNAME.fullmatch(username):
            raise AccountError("username", "2-64 letters, digits or _.@- required")
        email = normalised(email)
        self._check_password(password)
        role = _role(role)
        password_hash = self._hasher.hash(password)
        with self._lock:
            if self.get(username) is not None:
                raise AccountError("username", "already taken")
            self._check_email(email)

            def create(txn):
                if self._records.get(_USER, username.lower(), txn) is not None:
                    raise AccountError("username", "already taken")  # by another process meanwhile
                user = User(
                    id=self._records.next_id(txn, "user"),
                    username=username,
                    email=email,
                    role=role,
                    password_hash=password_hash,
                    sites=list(sites or []),
                    created_at=time.time(),
                )
                self._records.put(txn, _USER, username.lower(), msgspec.msgpack.encode(user))
                return user

            return self._store.write(create)

    def save(self, user: User) -> None:
        self._store.write(
            lambda txn: self._records.put(txn, _USER, user.username.lower(), msgspec.msgpack.encode(user))
        )

    def _require(self, username: str) -> User:
        user = self.get(username)
        if user is None:
            raise AccountError("username", f"no such user: {username!r}", 404)
        return user

    def _admins(self) -> int:
        return sum(1 for user in self.list() if user.role is Role.ADMIN)

    def update(
        self,
        username: str,
        *,
        role: str | None = None,
        email: str | None = None,
        sites: list[int] | None = None,
    ) -> User:
        """Change a user's role, email or site grants. The last admin cannot be demoted."""
        with self._lock:
            user = self._require(username)
            if role is not None:
                new_role = _role(role)
                if user.role is Role.ADMIN and new_role is not Role.ADMIN and self._admins() <= 1:
                    raise AccountError("role", "cannot demote the last admin", 409)
                user.role = new_role
            if email is not None:
                email = normalised(email)
                self._check_email(email, user.id)
                user.email = email
            if sites is not None:
                user.sites = sorted(set(sites))
            self.save(user)
            return user

    def set_password(self, username: str, password: str) -> User:
        """Set a new password and end the user's login tokens and sessions (API keys stay)."""
        self._check_password(password)
        password_hash = self._hasher.hash(password)
        with self._lock:
            user = self._require(username)
            user.password_hash = password_hash
            self.save(user)
        self._revoke_credentials(user.id, api_keys=False)
        return user

    def delete(self, username: str) -> User:
        """Delete a user with every token, session and API key. Never the last admin."""
        with self._lock:
            user = self._require(username)
            if user.role is Role.ADMIN and self._admins() <= 1:
                raise AccountError("username", "cannot delete the last admin", 409)
            self._store.write(lambda txn: self._records.delete(txn, _USER, user.username.lower()))
        self._revoke_credentials(user.id, api_keys=True)
        return user

    def forget_site(self, site_id: int) -> None:
        """Drop a deleted site from every user's grants."""
        with self._lock:
            for user in self.list():
                if site_id in user.sites:
                    user.sites = [granted for granted in user.sites if granted != site_id]
                    self.save(user)

    def verify_password(self, username: str, password: str) -> User | None:
        """The user if the password matches. argon2 compares in constant time, and an unknown
        username costs the same hash computation as a known one."""
        user = self.get(username or "")
        try:
            if user is None:
                self._hasher.verify(self._dummy_hash, password or "")
                return None
            self._hasher.verify(user.password_hash, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if self._hasher.check_needs_rehash(user.password_hash):
            user.password_hash = self._hasher.hash(password)
            self.save(user)
        return user

    def _resolve(self, user_id: int, username: str) -> User | None:
        """The live user behind a credential; None if deleted (or replaced by a namesake)."""
        user = self.get(username)
        return user if user is not None and user.id == user_id else None

    # -- login tokens ---------------------------------------------------------------------
    def issue_token(self, user: User, ttl_seconds: int | None = None, kind: str = "session") -> str:
        ttl = self.token_ttl if ttl_seconds is None else max(1, min(ttl_seconds, self.token_ttl))
        token = "ff_" + secrets.token_urlsafe(32)
        record = Token(user_id=user.id, username=user.username, expires_at=time.time() + ttl, kind=kind)
        self._store.write(
            lambda txn: self._records.put(txn, _TOKEN, digest(token), msgspec.msgpack.encode(record))
        )
        self._purge_now_and_then()
        return token

    def user_for_token(self, token: str) -> User | None:
        if not token:
            return None
        raw = self._records.get(_TOKEN, digest(token))
        if raw is None:
            return None
        record = msgspec.msgpack.decode(raw, type=Token)
        if record.expires_at < time.time():
            return None
        return self._resolve(record.user_id, record.username)

    # -- API keys -------------------------------------------------------------------------
    def create_api_key(
        self, user: User, name: str, *, read_only: bool = False, expires_in_days: int | None = None
    ) -> tuple[str, ApiKey]:
        """A new key for ``user``: returns (the key, shown only now; its stored record)."""
        name = normalised(name)
        if not 1 <= len(name) <= 100:
            raise AccountError("name", "1-100 characters required")
        if problem := control_character(name):
            raise AccountError("name", problem)
        if expires_in_days is not None and expires_in_days < 1:
            raise AccountError("expires_in_days", "must be at least 1")
        key = "ffk_" + secrets.token_urlsafe(32)
        now = time.time()

        def create(txn):
            record = ApiKey(
                id=self._records.next_id(txn, "apikey"),
                user_id=user.id,
                username=user.username,
                name=name,
                prefix=key[:10],
                read_only=read_only,
                created_at=now,
                expires_at=now + expires_in_days * 86_400 if expires_in_days else 0.0,
            )
            self._records.put(txn, _API_KEY, digest(key), msgspec.msgpack.encode(record))
            return record

        return key, self._store.write(create)

    def api_keys(self, user_id: int | None = None) -> list[ApiKey]:
        keys = (msgspec.msgpack.decode(raw, type=ApiKey) for _, raw in self._records.scan(_API_KEY))
        return sorted((k for k in keys if user_id is None or k.user_id == user_id), key=lambda k: k.id)

    def revoke_api_key(self, key_id: int, user_id: int | None = None) -> ApiKey | None:
        """Revoke a key by id (only one of ``user_id``'s, when given). None if there is none."""
        for identifier, raw in self._records.scan(_API_KEY):
            record = msgspec.msgpack.decode(raw, type=ApiKey)
            if record.id == key_id and (user_id is None or record.user_id == user_id):
                self._store.write(lambda txn, i=identifier: self._records.delete(txn, _API_KEY, i))
                return record
        return None

    def user_for_api_key(self, key: str) -> tuple[User, ApiKey] | None:
        if not key:
            return None
        raw = self._records.get(_API_KEY, digest(key))
        if raw is None:
            return None
        record = msgspec.msgpack.decode(raw, type=ApiKey)
        if record.expires_at and record.expires_at < time.time():
            return None
        user = self._resolve(record.user_id, record.username)
        return (user, record) if user is not None else None

    # -- dashboard sessions ---------------------------------------------------------------
    def create_session(self, user: User) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(
            user_id=user.id,
            username=user.username,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self._session_idle,
            absolute_expires_at=now + self._session_max,
        )
        self._store.write(
            lambda txn: self._records.put(txn, _SESSION, digest(session_id), msgspec.msgpack.encode(session))
        )
        self._purge_now_and_then()
        return session_id, session

    def session(self, session_id: str) -> tuple[User, Session] | None:
        if not session_id:
            return None
        key = digest(session_id)
        raw = self._records.get(_SESSION, key)
        if raw is None:
            return None
        session = msgspec.msgpack.decode(raw, type=Session)
        now = time.time()
        if session.expires_at < now or session.absolute_expires_at < now:
            return None
        user = self._resolve(session.user_id, session.username)
        if user is None:
            return None
        if session.expires_at - self._session_idle < now - _SESSION_TOUCH_SECONDS:
            session.expires_at = min(now + self._session_idle, session.absolute_expires_at)
            self._store.write(
                lambda txn: self._records.put(txn, _SESSION, key, msgspec.msgpack.encode(session))
            )
        return user, session

    def end_session(self, session_id: str) -> bool:
        if not session_id:
            return False
        return self._store.write(lambda txn: self._records.delete(txn, _SESSION, digest(session_id)))

    # -- housekeeping ---------------------------------------------------------------------
    def _revoke_credentials(self, user_id: int, *, api_keys: bool) -> None:
        kinds = [(_TOKEN, Token), (_SESSION, Session)] + ([(_API_KEY, ApiKey)] if api_keys else [])
        doomed = [
            (kind, identifier)
            for kind, struct in kinds
            for identifier, raw in self._records.scan(kind)
            if msgspec.msgpack.decode(raw, type=struct).user_id == user_id
        ]

        def delete(txn):
            for kind, identifier in doomed:
                self._records.delete(txn, kind, identifier)

        if doomed:
            self._store.write(delete)

    def _purge_now_and_then(self) -> None:
        now = time.time()
        if now - self._last_purge < _PURGE_EVERY_SECONDS:
            return
        self._last_purge = now
        self.purge_expired(now)

    def purge_expired(self, now: float | None = None) -> int:
        """Delete expired login tokens and sessions; returns how many."""
        now = time.time() if now is None else now
        doomed = [
            (_TOKEN, identifier)
            for identifier, raw in self._records.scan(_TOKEN)
            if msgspec.msgpack.decode(raw, type=Token).expires_at < now
        ]
        for identifier, raw in self._records.scan(_SESSION):
            session = msgspec.msgpack.decode(raw, type=Session)
            if min(session.expires_at, session.absolute_expires_at) < now:
                doomed.append((_SESSION, identifier))

        def delete(txn):
            for kind, identifier in doomed:
                self._records.delete(txn, kind, identifier)

        if doomed:
            self._store.write(delete)
        return len(doomed)
