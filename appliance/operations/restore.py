"""Restoring a backup (:mod:`appliance.operations.backups`) into a data dir.

The backup is verified first (every file against the manifest's checksum), then copied into
a staging folder inside the data dir (checksummed again as it is written, so a bad disk is
caught too) and only then moved into place: a restore that fails — a damaged backup, a disk
that fills up — leaves the data dir as it found it. A data dir that holds anything is refused
unless ``force``; then its old contents are removed only after the new ones are staged. The
caller holds the data dir's writer lock (:mod:`appliance.runtime.ownership`), so no server
runs on it meanwhile.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from appliance.operations.backups import BackupError, copy_file, is_disk_full, verify_backup

STAGING = ".restore-staging"
KEPT_NAMES = frozenset({"footfall.lock"})  # the restoring process's own lock stays


def _contents(data: Path) -> list[Path]:
    # ".restore-*": a restore's staging, a standby's seed being received (operations.seeding)
    return [child for child in data.iterdir() if child.name not in KEPT_NAMES and not child.name.startswith(".restore-")]


def restore_backup(source: str | os.PathLike[str], data_dir: str | os.PathLike[str], *, force: bool = False,
                   open_target: Callable[[Path], BinaryIO] | None = None) -> dict:
    """Restore the backup at ``source`` into ``data_dir``; returns its manifest. Raises
    :class:`BackupError`: a damaged backup, a non-empty data dir without ``force``, a full
    disk (``disk_full``; the data dir is left as it was)."""
    data = Path(data_dir).resolve()
    manifest = verify_backup(source)
    data.mkdir(parents=True, exist_ok=True)
    existing = _contents(data)
    if existing and not force:
        raise BackupError("data", f"{data} is not empty ({len(existing)} entries): restore into an empty "
                                  "data dir, or add --force to replace its contents")
    staging = data / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    root = Path(source)
    try:
        for relative, entry in manifest["files"].items():
            if copy_file(root / relative, staging / relative, open_target) != entry["sha256"]:
                raise BackupError("data", f"{relative} changed while it was restored: check the disk")
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if is_disk_full(error):
            raise BackupError("data", f"disk full while restoring into {data}: {error}; "
                                      "the data dir was left as it was", disk_full=True) from error
        raise BackupError("data", f"could not restore into {data}: {error}") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for child in existing:  # --force: the old contents go once the new ones are staged
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for child in sorted(staging.iterdir()):
        child.replace(data / child.name)
    staging.rmdir()
    _fsync_directory(data)
    return manifest


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
