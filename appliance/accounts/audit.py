"""The audit log: who did what to users, sites, API keys and settings, and when.

Entries are appended to LMDB records under a zero-padded sequence number, so a scan returns
them oldest first and the newest are read from the end. An entry names the actor (a user, or
``cli`` for the command line), the action (``user.create``, ``site.delete``...), the target
and a few details; it never holds a password, a token, a key or an IP address (Footfall
keeps no IP addresses on disk). Admins read it through
``GET /api/v1/audit``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

_KIND = "audit"


class AuditEntry(msgspec.Struct, kw_only=True):
    id: int
    at: float
    actor: str  # a username, or "cli" for the command line
    action: str
    target: str = ""
    details: dict[str, Any] = {}


class AuditLog:
    def __init__(self, store, records) -> None:
        self._store = store
        self._records = records

    def record(
        self, actor: str, action: str, target: str = "", **details: Any
    ) -> AuditEntry:
        def append(txn):
            entry = AuditEntry(
                id=self._records.next_id(txn, _KIND),
                at=time.time(),
                actor=actor,
                action=action,
                target=target,
                details=details,
            )
            self._records.put(txn, _KIND, f"{entry.id:016d}", msgspec.msgpack.encode(entry))
            return entry

        return self._store.write(append)

    def latest(self, limit: int = 100, action: str | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (optionally of one action or action prefix), newest first."""
        entries = [msgspec.msgpack.decode(raw, type=AuditEntry) for _, raw in self._records.scan(_KIND)]
        if action:
            entries = [e for e in entries if e.action == action or e.action.startswith(action + ".")]
        return entries[::-1][:limit]
