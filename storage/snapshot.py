"""Consistent copies of the LMDB environment, taken while writers keep writing.

LMDB is multi-version: a read transaction sees one committed state for as long as it is open,
and writers never wait for readers. :func:`compact_copy` writes that state as a new,
compacted ``data.mdb`` (free pages left out) from a read transaction the caller already holds,
so whatever else the caller reads in the same transaction (the event sequence, the sites)
describes exactly the copied bytes.

:class:`ReadOnlyStore` opens an environment read-only from a second process (the ``footfall
backup`` command beside a running server): it takes no write transaction, no lock of
Footfall's, and registers in LMDB's reader table like any reader. While it reads, the pages
it sees stay allocated, so the store may grow a little during a long copy; nothing waits.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import lmdb

from storage.environment import DATABASES

DATA_FILE = "data.mdb"


class SnapshotError(RuntimeError):
    """The copy could not be written; ``disk_full`` when the destination ran out of space."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full


class _ReadOnlyTransaction:
    __slots__ = ("_env", "_txn")

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self._txn = None

    def __enter__(self) -> lmdb.Transaction:
        try:
            self._txn = self._env.begin(write=False, buffers=False)
        except lmdb.MapResizedError:  # the server grew the map since this process opened it
            self._env.set_mapsize(0)  # adopt the size the file now has
            self._txn = self._env.begin(write=False, buffers=False)
        return self._txn

    def __exit__(self, *exc) -> None:
        self._txn.abort()


class ReadOnlyStore:
    """An existing environment opened read-only: ``db(name)`` and ``read()`` like
    :class:`~storage.environment.Store`, enough for the record and event-log readers."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not (self.path / DATA_FILE).is_file():
            raise FileNotFoundError(f"no Footfall store at {self.path}")
        self.env = lmdb.open(
            str(self.path), readonly=True, lock=True, subdir=True, max_dbs=len(DATABASES) + 8,
            max_readers=256, map_size=(self.path / DATA_FILE).stat().st_size,
        )
        self.dbs = {}
        for name in DATABASES:
            # Each in its own transaction (no txn argument): a handle opened inside a read
            # transaction that is then closed is not valid in later ones.
            try:
                self.dbs[name] = self.env.open_db(name, create=False)
            except lmdb.NotFoundError:
                continue  # an older store without this database: nothing to read in it

    def db(self, name: bytes):
        return self.dbs[name]

    def read(self) -> _ReadOnlyTransaction:
        return _ReadOnlyTransaction(self.env)

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> ReadOnlyStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compact_copy(env: lmdb.Environment, txn: lmdb.Transaction, destination: str | os.PathLike[str]) -> Path:
    """Write the state ``txn`` sees as ``destination/data.mdb`` (a new directory's only
    file), compacted. Raises :class:`SnapshotError` (``disk_full`` on ENOSPC/EDQUOT); a
    partial file is removed."""
    target = Path(destination)
    target.mkdir(parents=True, exist_ok=True)
    copied = target / DATA_FILE
    try:
        env.copy(str(target), compact=True, txn=txn)
    except (lmdb.Error, OSError) as error:
        copied.unlink(missing_ok=True)
        text = str(error)
        full = (getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
                or "No space left" in text or "Disk quota" in text)
        if full:
            raise SnapshotError(f"disk full while copying the store to {target}: {text}", disk_full=True) from error
        raise SnapshotError(f"could not copy the store to {target}: {text}") from error
    return copied


__all__ = ["DATA_FILE", "ReadOnlyStore", "SnapshotError", "compact_copy"]
