"""Metadata records (users, sites, tokens, salts, settings) and id sequences.

A record lives under ``kind/identifier``; its value is opaque bytes (the appliance stores
msgspec MessagePack). Kinds are short ASCII names chosen by the caller. A *generation* is a
counter bumped in the same transaction as a write: a process that caches records (another
process may write them: the CLI beside a server) compares it to notice changes cheaply.
"""

from __future__ import annotations

from collections.abc import Iterator

from storage.keys import pack_u64, unpack_u64

_VERSION = b"records_version"


def _key(kind: str, identifier: str) -> bytes:
    return f"{kind}/{identifier}".encode()


class Records:
    def __init__(self, store) -> None:
        self._store = store
        self._db = store.db(b"records")
        self._sequences = store.db(b"sequences")

    def get(self, kind: str, identifier: str, txn=None) -> bytes | None:
        if txn is not None:
            return txn.get(_key(kind, identifier), db=self._db)
        with self._store.read() as own:
            return own.get(_key(kind, identifier), db=self._db)

    def put(self, txn, kind: str, identifier: str, value: bytes) -> None:
        txn.put(_key(kind, identifier), value, db=self._db)
        self._touch(txn)

    def delete(self, txn, kind: str, identifier: str) -> bool:
        self._touch(txn)
        return txn.delete(_key(kind, identifier), db=self._db)

    # -- the version of all records: what a standby compares to know it must copy them again --
    def _touch(self, txn) -> None:
        raw = txn.get(_VERSION, db=self._sequences)
        txn.put(_VERSION, pack_u64((unpack_u64(raw) if raw else 0) + 1), db=self._sequences)

    def version(self, txn) -> int:
        """A counter bumped by every write of any record."""
        raw = txn.get(_VERSION, db=self._sequences)
        return unpack_u64(raw) if raw else 0

    def items(self, txn) -> Iterator[tuple[str, bytes]]:
        """Every record as ``("kind/identifier", value)``."""
        for key, value in txn.cursor(db=self._db):
            yield bytes(key).decode(), bytes(value)

    def put_item(self, txn, key: str, value: bytes) -> None:
        """Store a record by its whole ``kind/identifier`` key (a copied record)."""
        txn.put(key.encode(), value, db=self._db)

    def delete_item(self, txn, key: str) -> None:
        txn.delete(key.encode(), db=self._db)

    def ids(self, txn) -> dict[str, int]:
        """The id sequences (:meth:`next_id`) by name."""
        cursor = txn.cursor(db=self._sequences)
        out = {}
        if cursor.set_range(b"id/"):
            for key, value in cursor:
                if not bytes(key).startswith(b"id/"):
                    break
                out[bytes(key)[3:].decode()] = unpack_u64(value)
        return out

    def set_id(self, txn, name: str, value: int) -> None:
        txn.put(f"id/{name}".encode(), pack_u64(value), db=self._sequences)

    def delete_prefixed(self, txn, kind: str, prefix: str) -> int:
        """Delete every record of ``kind`` whose identifier starts with ``prefix``."""
        doomed = [identifier for identifier, _ in self._scan(txn, f"{kind}/".encode()) if identifier.startswith(prefix)]
        for identifier in doomed:
            self.delete(txn, kind, identifier)
        return len(doomed)

    def scan(self, kind: str, txn=None) -> Iterator[tuple[str, bytes]]:
        prefix = f"{kind}/".encode()
        if txn is None:
            with self._store.read() as own:
                yield from list(self._scan(own, prefix))
        else:
            yield from self._scan(txn, prefix)

    def _scan(self, txn, prefix: bytes) -> Iterator[tuple[str, bytes]]:
        cursor = txn.cursor(db=self._db)
        if not cursor.set_range(prefix):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                return
            yield key[len(prefix) :].decode(), value

    # -- generations: a counter another process can watch to know a kind of record changed --
    def generation(self, name: str, txn=None) -> int:
        key = f"generation/{name}".encode()
        if txn is None:
            with self._store.read() as own:
                raw = own.get(key, db=self._sequences)
        else:
            raw = txn.get(key, db=self._sequences)
        return unpack_u64(raw) if raw else 0

    def bump_generation(self, txn, name: str) -> int:
        """Advance the generation ``name`` inside ``txn``; returns the value it had."""
        previous = self.generation(name, txn)
        txn.put(f"generation/{name}".encode(), pack_u64(previous + 1), db=self._sequences)
        return previous

    def next_id(self, txn, name: str) -> int:
        key = f"id/{name}".encode()
        raw = txn.get(key, db=self._sequences)
        value = unpack_u64(raw) if raw else 1
        txn.put(key, pack_u64(value + 1), db=self._sequences)
        return value
