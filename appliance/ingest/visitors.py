"""Visitor ids: keyed hashes that rotate daily, so no raw IP or identifier is ever stored.

Without a ``user_id`` a visitor is ``blake2b(site | client IP | user agent, key=daily salt)``;
the salt is random, made per UTC day, kept 48 hours and then deleted, so yesterday's ids can
no longer be recomputed from an IP address (Plausible's scheme). With a ``user_id`` the
visitor is a keyed hash of that id under a per-installation secret that does not rotate, so
a logged-in user stays one visitor across days without the id itself being stored.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

import msgspec

_SALT_KIND = "salt"
_SECRET_KIND = "secret"
SALT_LIFETIME_SECONDS = 48 * 3600


class _SaltRecord(msgspec.Struct):
    day: int
    salt: bytes


class VisitorHasher:
    def __init__(self, store, records) -> None:
        self._store = store
        self._records = records
        self._lock = threading.Lock()
        self._salts: dict[int, bytes] = {}
        self._secret = self._load_or_create_secret()
        self._load_salts()

    def _load_or_create_secret(self) -> bytes:
        existing = self._records.get(_SECRET_KIND, "user_id")
        if existing is not None:
            return existing
        secret = os.urandom(32)
        self._store.write(lambda txn: self._records.put(txn, _SECRET_KIND, "user_id", secret))
        return secret

    def reload(self) -> None:
        """Read the secret and the salts again (a standby copied its primary's)."""
        secret = self._records.get(_SECRET_KIND, "user_id")
        with self._lock:
            if secret is not None:
                self._secret = secret
            self._salts.clear()
        self._load_salts()

    def _load_salts(self) -> None:
        for _, raw in self._records.scan(_SALT_KIND):
            record = msgspec.msgpack.decode(raw, type=_SaltRecord)
            self._salts[record.day] = record.salt

    def salt_for(self, day: int) -> bytes:
        salt = self._salts.get(day)
        if salt is not None:
            return salt
        with self._lock:
            salt = self._salts.get(day)
            if salt is None:
                salt = os.urandom(32)
                record = msgspec.msgpack.encode(_SaltRecord(day=day, salt=salt))
                self._store.write(lambda txn: self._records.put(txn, _SALT_KIND, str(day), record))
                self._salts[day] = salt
        # A new day's salt: forget the ones older than 48 hours (nothing else calls rotate).
        self.rotate(day * 86400)
        return salt

    def rotate(self, now: float | None = None) -> int:
        """Delete salts older than 48 hours; returns how many were removed."""
        today = int((time.time() if now is None else now) // 86400)
        expired = [day for day in list(self._salts) if day < today - 1]
        if expired:

            def delete(txn):
                for day in expired:
                    self._records.delete(txn, _SALT_KIND, str(day))

            self._store.write(delete)
            with self._lock:
                for day in expired:
                    self._salts.pop(day, None)
        return len(expired)

    def current_salts(self, now: float | None = None) -> list[bytes]:
        """Today's salt first, then yesterday's if still kept (a visit may span midnight)."""
        today = int((time.time() if now is None else now) // 86400)
        salts = [self.salt_for(today)]
        if today - 1 in self._salts:
            salts.append(self._salts[today - 1])
        return salts

    def anonymous_id(self, site_id: int, client_ip: str, user_agent: str, now: float) -> int:
        salt = self.salt_for(int(now // 86400))
        return self.anonymous_id_with_salt(salt, site_id, client_ip, user_agent)

    def previous_day_id(self, site_id: int, client_ip: str, user_agent: str, now: float) -> int | None:
        """The id under yesterday's salt, if that salt is still kept (visits across midnight)."""
        salt = self._salts.get(int(now // 86400) - 1)
        if salt is None:
            return None
        return self.anonymous_id_with_salt(salt, site_id, client_ip, user_agent)

    @staticmethod
    def anonymous_id_with_salt(salt: bytes, site_id: int, client_ip: str, user_agent: str) -> int:
        data = f"{site_id}\x1f{client_ip}\x1f{user_agent}".encode()
        digest = hashlib.blake2b(data, key=salt, digest_size=8).digest()
        return int.from_bytes(digest, "big") or 1

    def user_id_hash(self, site_id: int, user_id: str) -> int:
        data = f"{site_id}\x1f{user_id}".encode()
        digest = hashlib.blake2b(data, key=self._secret, digest_size=8).digest()
        return int.from_bytes(digest, "big") or 1
