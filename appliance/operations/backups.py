"""Backups of a data dir, taken while the server keeps ingesting, and their verification.

A backup is a directory::

    manifest.json            format, Footfall version, time, sites, event count, checksums
    footfall.lmdb/data.mdb   the store, compacted, as one read transaction saw it
    plugins/...              every other file of the data dir that matters (plugins folder, …)

The store is copied from a read transaction (:func:`storage.snapshot.compact_copy`): LMDB
readers never block the writer, so ingestion goes on while the copy is written, and the
manifest's ``event_count`` and ``sites`` are read in the same transaction, so they describe
exactly the copied state. ``event_count`` is the number of events accepted up to that state
(the event log's sequence): a restored server holds exactly the first ``event_count`` events
the source acknowledged. Events committed but not yet folded into counters are in the copy's
``pending`` list, and the restored server folds them in when it opens; events still only in
the intake (:mod:`storage.intake`: acknowledged, not yet given a place in the event log by a
fold - usually the last second's, longer while a load keeps the folds busy) come after
``event_count`` and are not in the copy.

Left out: the intake, the writer lock, LMDB's ``lock.mdb``, the first admin's password file (a secret
that the store's users make unneeded) and any backups folder inside the data dir.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

from appliance.errors import DomainError
from appliance.sites import stored_sites
from storage.intake import INTAKE_DIRECTORY
from storage.keys import unpack_u64
from storage.records import Records
from storage.snapshot import DATA_FILE, SnapshotError, compact_copy

FORMAT = 1
MANIFEST = "manifest.json"
STORE_DIRECTORY = "footfall.lmdb"
# Never part of a backup: locks, a secret the restored users make unneeded.
SKIPPED_NAMES = frozenset({"footfall.lock", "lock.mdb", "first-admin-password.txt"})
_CHUNK = 1 << 20


class BackupError(DomainError):
    """A backup or restore failed or was refused; nothing was changed where it was refused.
    ``disk_full`` when the destination ran out of space (answered 507)."""

    status = 409

    def __init__(self, field: str | None, message: str, *, disk_full: bool = False) -> None:
        super().__init__(field, message, 507 if disk_full else None)
        self.disk_full = disk_full


def footfall_version() -> str:
    try:
        return metadata.version("footfall")
    except metadata.PackageNotFoundError:
        return "unknown"


def is_disk_full(error: OSError) -> bool:
    return error.errno in (errno.ENOSPC, errno.EDQUOT)


def _open_for_writing(path: Path) -> BinaryIO:
    return open(path, "wb")  # noqa: SIM115 - the caller closes it (a with block)


def copy_file(source: Path, target: Path, open_target: Callable[[Path], BinaryIO] | None = None) -> str:
    """Copy ``source`` to ``target`` (fsync'd) and return the copy's sha256. ``open_target``
    opens the target for writing (tests inject a writer that fails)."""
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    opener = open_target or _open_for_writing
    with open(source, "rb") as reader, opener(target) as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def data_files(data_dir: Path, skip: tuple[Path, ...] = ()) -> Iterator[Path]:
    """The data dir's files to back up besides the store, relative to it: not the folders in
    ``skip`` (the backup being written), nor any backup (a folder with a manifest, such as
    those in ``<data>/backups``), nor a restore's staging folder."""
    skipped = {path.resolve() for path in skip}
    for root, directories, files in os.walk(data_dir):
        here = Path(root)
        directories[:] = sorted(
            name for name in directories
            if not (here == data_dir and name in (STORE_DIRECTORY, INTAKE_DIRECTORY))
            and (here / name).resolve() not in skipped
            and not (here / name / MANIFEST).exists()
            and not name.startswith(".restore-")
        )
        for name in sorted(files):
            path = here / name
            if name in SKIPPED_NAMES or not path.is_file() or path.is_symlink():
                continue
            yield path.relative_to(data_dir)


def _empty_or_missing(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _write_manifest(destination: Path, manifest: dict) -> None:
    partial = destination / f".{MANIFEST}.partial"
    with open(partial, "w") as file:
        json.dump(manifest, file, indent=2, sort_keys=True)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    partial.replace(destination / MANIFEST)  # a backup without a manifest is not a backup


def make_backup(store, data_dir: str | os.PathLike[str], destination: str | os.PathLike[str], *,
                open_target: Callable[[Path], BinaryIO] | None = None) -> dict:
    """Back up the data dir whose store is ``store`` (the server's own
    :class:`~storage.environment.Store` or a :class:`~storage.snapshot.ReadOnlyStore`) into
    the new directory ``destination``; returns the manifest. Refuses a non-empty destination;
    on failure (:class:`BackupError`, ``disk_full`` on ENOSPC) removes what it wrote. Earlier
    backups inside the data dir (folders with a manifest) are left out."""
    data = Path(data_dir).resolve()
    target = Path(destination).resolve()
    if not _empty_or_missing(target):
        raise BackupError("destination", f"{target} exists and is not empty: choose a new directory")
    if target == data or data in target.parents and target.parts[len(data.parts)] == STORE_DIRECTORY:
        raise BackupError("destination", "the destination cannot be the data dir or its store")
    created = not target.exists()
    started = time.time()
    try:
        target.mkdir(parents=True, exist_ok=True)
        files: dict[str, dict] = {}
        records = Records(store)
        with store.read() as txn:
            # Read before copying: LMDB's copy ends its use of the transaction.
            raw = txn.get(b"event_sequence", db=store.db(b"sequences"))
            event_count = (unpack_u64(raw) - 1) if raw else 0
            sites = sorted(site.domain for site in stored_sites(records, txn))
            copied = compact_copy(store.env, txn, target / STORE_DIRECTORY)
        _fsync_file(copied)
        files[f"{STORE_DIRECTORY}/{DATA_FILE}"] = {"sha256": file_sha256(copied), "bytes": copied.stat().st_size}
        for relative in data_files(data, skip=(target,)):
            files[relative.as_posix()] = {
                "sha256": copy_file(data / relative, target / relative, open_target),
                "bytes": (data / relative).stat().st_size,
            }
        manifest = {
            "format": FORMAT,
            "footfall_version": footfall_version(),
            "created_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "created_at_unix": round(started, 3),
            "sites": sites,
            "event_count": event_count,
            "files": files,
        }
        _write_manifest(target, manifest)
        return manifest
    except SnapshotError as error:
        _discard(target, created)
        raise BackupError("destination", str(error), disk_full=error.disk_full) from error
    except OSError as error:
        _discard(target, created)
        if is_disk_full(error):
            raise BackupError("destination", f"disk full while writing the backup to {target}: {error}",
                              disk_full=True) from error
        raise BackupError("destination", f"could not write the backup to {target}: {error}") from error
    except BaseException:
        _discard(target, created)
        raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(target: Path, created: bool) -> None:
    """Remove a failed backup's files (the directory too when this backup made it)."""
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in list(target.iterdir()) if target.exists() else ():
        with suppress(OSError):
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def read_manifest(source: str | os.PathLike[str]) -> dict:
    path = Path(source) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BackupError("source", f"{source} is not a Footfall backup: no {MANIFEST}") from None
    except (OSError, ValueError) as error:
        raise BackupError("source", f"unreadable {path}: {error}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), dict):
        raise BackupError("source", f"{path}: not a backup manifest of format {FORMAT}")
    if f"{STORE_DIRECTORY}/{DATA_FILE}" not in manifest["files"]:
        raise BackupError("source", f"{path} lists no store")
    return manifest


def verify_backup(source: str | os.PathLike[str]) -> dict:
    """Check every file the manifest lists against its checksum; returns the manifest."""
    root = Path(source)
    manifest = read_manifest(root)
    for relative, entry in manifest["files"].items():
        path = (root / relative).resolve()
        if root.resolve() not in path.parents:
            raise BackupError("source", f"the manifest names a file outside the backup: {relative}")
        if not path.is_file():
            raise BackupError("source", f"{relative} is missing from the backup")
        if file_sha256(path) != entry.get("sha256"):
            raise BackupError("source", f"{relative} does not match its checksum: the backup is damaged")
    return manifest
