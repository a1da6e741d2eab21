"""String interning: long strings (paths, referrers, browser names) become short integer ids.

Ids keep counter and event-log keys fixed-width and far under LMDB's 511-byte key limit.
Id 0 is the empty string. New ids are allocated inside the caller's write transaction and
only enter the in-memory cache once that transaction commits (``commit``); ``rollback``
forgets them, so an aborted transaction never leaves a dangling id in the cache. The cache
holds at most ``max_cached`` texts each way (0: no bound); past it the oldest quarter is
forgotten and read from LMDB again when next needed.
"""

from __future__ import annotations

import itertools
import threading

from storage.keys import pack_u32, unpack_u32

MAX_STRING_BYTES = 480
_NEXT_ID_KEY = b"string_id"


def _encode(text: str) -> bytes:
    data = text.encode("utf-8", "replace")
    if len(data) > MAX_STRING_BYTES:
        data = data[:MAX_STRING_BYTES].decode("utf-8", "ignore").encode()
    return data


class StringTable:
    def __init__(self, store, max_cached: int = 0) -> None:
        self._store = store
        self.max_cached = max_cached
        self._ids: dict[str, int] = {"": 0}
        self._texts: dict[int, str] = {0: ""}
        self._pending: dict[str, int] = {}
        self._pending_txn = None
        self._lock = threading.Lock()
        self._by_text = store.db(b"strings")
        self._by_id = store.db(b"string_ids")
        self._sequences = store.db(b"sequences")

    def intern(self, txn, text: str) -> int:
        """The id of ``text``, allocating one in ``txn`` if it is new."""
        if txn is not self._pending_txn:
            # A new transaction: ids pending from an aborted one (a MapFullError retry in
            # Store.write reruns the same work) were never stored, so they must not be reused.
            self._pending.clear()
            self._pending_txn = txn
        found = self._ids.get(text)
        if found is not None:
            return found
        found = self._pending.get(text)
        if found is not None:
            return found
        data = _encode(text)
        stored = txn.get(data, db=self._by_text)
        if stored is not None:
            string_id = unpack_u32(stored)
        else:
            raw_next = txn.get(_NEXT_ID_KEY, db=self._sequences)
            string_id = unpack_u32(raw_next) if raw_next else 1
            txn.put(_NEXT_ID_KEY, pack_u32(string_id + 1), db=self._sequences)
            txn.put(data, pack_u32(string_id), db=self._by_text)
            txn.put(pack_u32(string_id), data, db=self._by_id)
        self._pending[text] = string_id
        return string_id

    @property
    def known_ids(self) -> dict[str, int]:
        """The committed text → id map (read-only for callers)."""
        return self._ids

    def commit(self) -> None:
        with self._lock:
            for text, string_id in self._pending.items():
                self._ids[text] = string_id
                # What was stored (truncated), so a long text reads the same after a restart.
                self._texts[string_id] = _encode(text).decode("utf-8")
            self._trim()
        self._pending.clear()
        self._pending_txn = None

    def rollback(self) -> None:
        self._pending.clear()
        self._pending_txn = None

    def lookup(self, text: str, txn=None) -> int | None:
        """The id of ``text`` if it was ever interned, without allocating."""
        found = self._ids.get(text)
        if found is not None:
            return found
        if txn is None:
            with self._store.read() as own:
                stored = own.get(_encode(text), db=self._by_text)
        else:
            stored = txn.get(_encode(text), db=self._by_text)
        return unpack_u32(stored) if stored is not None else None

    def text(self, string_id: int, txn=None) -> str:
        found = self._texts.get(string_id)
        if found is not None:
            return found
        if txn is None:
            with self._store.read() as own:
                data = own.get(pack_u32(string_id), db=self._by_id)
        else:
            data = txn.get(pack_u32(string_id), db=self._by_id)
        text = data.decode("utf-8") if data is not None else ""
        with self._lock:
            self._texts[string_id] = text
            self._trim()
        return text

    def _trim(self) -> None:
        """Forget the oldest quarter of a map past ``max_cached`` (under the lock). The maps
        are changed in place: the ingest path holds :attr:`known_ids` across a batch."""
        limit = self.max_cached
        for cache in (self._ids, self._texts):
            if limit and len(cache) > limit:
                for key in list(itertools.islice(iter(cache), len(cache) - limit * 3 // 4)):
                    del cache[key]
        self._ids[""] = 0
        self._texts[0] = ""
