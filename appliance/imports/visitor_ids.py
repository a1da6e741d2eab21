"""Visitor ids for imported history: deterministic per site and day, never stored raw.

Live traffic hashes (site, IP, user agent) under a random daily salt that is deleted after 48
hours (:mod:`appliance.ingest.visitors`), so a past day's salt no longer exists when its logs
are imported, and a fresh random one would give the same visitor two ids when the day's log
comes in two files, imported a week apart. Imported events are hashed instead under an
*import salt* per UTC day, derived from a per-installation import secret (random, made once,
kept in LMDB): ``blake2b(key=secret, "import-salt|day")``. The same log line always gives
the same visitor id on one installation, whatever file it comes in, and as with live ids
the IP address and user agent themselves are never written anywhere.

The trade-off, stated: unlike a deleted live salt, the import secret stays, so whoever holds
the data dir *and* a visitor's IP address and user agent can test whether that visitor is in
the imported history — which the access logs themselves already tell them. Import salts are
never used for live traffic, so live ids keep their 48-hour unlinkability.

A visit across UTC midnight keeps the previous day's id, as live ingest does: an event within
the visit timeout after midnight whose previous-day id was seen within the timeout before it
takes that id (:class:`ImportVisitors` remembers recent ids, pruned as time moves on).
"""

from __future__ import annotations

import hashlib
import os

from appliance.ingest.visitors import VisitorHasher

_KIND = "secret"
_NAME = "imports"


class ImportVisitors:
    """Visitor ids of one import run (see the module docstring)."""

    def __init__(self, store, records, timeout_seconds: int) -> None:
        secret = records.get(_KIND, _NAME)
        if secret is None:
            secret = os.urandom(32)
            store.write(lambda txn: records.put(txn, _KIND, _NAME, secret))
        self._secret = secret
        self._salts: dict[int, bytes] = {}
        self._timeout = timeout_seconds
        self._seen: dict[int, float] = {}
        self._pruned_at = 0.0

    def salt(self, day: int) -> bytes:
        found = self._salts.get(day)
        if found is None:
            found = hashlib.blake2b(f"import-salt|{day}".encode(), key=self._secret, digest_size=32).digest()
            self._salts[day] = found
        return found

    def visitor_id(self, site_id: int, client_ip: str, user_agent: str, timestamp: float) -> int:
        day = int(timestamp // 86400)
        visitor = VisitorHasher.anonymous_id_with_salt(self.salt(day), site_id, client_ip, user_agent)
        seen = self._seen
        if timestamp - day * 86400 <= self._timeout and visitor not in seen:
            previous = VisitorHasher.anonymous_id_with_salt(self.salt(day - 1), site_id, client_ip, user_agent)
            last = seen.get(previous)
            if last is not None and 0 <= timestamp - last <= self._timeout:
                visitor = previous
        seen[visitor] = max(timestamp, seen.get(visitor, timestamp))
        if len(seen) > 200_000 and timestamp - self._pruned_at > self._timeout:
            horizon = timestamp - self._timeout
            self._seen = {key: last for key, last in seen.items() if last >= horizon}
            self._pruned_at = timestamp
        return visitor
