"""Scheduled backups: one every ``[backup] interval_hours``, rotated, shipped to targets.

The background jobs (:mod:`appliance.runtime.jobs`) call :func:`run_scheduled_backup` every
hour. The copy is made by ``footfall backup`` in a child process, exactly as an operator's:
a reader in another process never holds up the server's writer, not even when the map must
grow (in the server's own process a resize waits for every open read transaction). It looks at the backups directory itself (so a restart keeps the schedule), writes a
new backup once the newest is ``interval_hours`` old, deletes those the rotation no longer
keeps (the newest of each of the last ``keep_daily`` UTC days and of each of the last
``keep_weekly`` ISO weeks), then ships the new one to each target named in ``[backup]
targets`` (plugins' ``register_backup_targets``). A target that fails is logged and reported;
the backup itself stays.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from appliance.config import BackupSettings
from appliance.extensions import BackupTarget
from appliance.operations.backups import MANIFEST, BackupError, read_manifest

log = logging.getLogger(__name__)
PREFIX = "footfall-"
_STAMP = "%Y%m%dT%H%M%SZ"


def backups_directory(settings: BackupSettings, data_dir: str | os.PathLike[str]) -> Path:
    return Path(settings.directory) if settings.directory else Path(data_dir) / "backups"


def backup_name(at: float) -> str:
    return PREFIX + datetime.fromtimestamp(at, UTC).strftime(_STAMP)


def list_backups(directory: Path) -> list[tuple[datetime, Path]]:
    """Finished backups (a manifest written) in ``directory``, newest first."""
    found = []
    if not directory.is_dir():
        return found
    for child in directory.iterdir():
        if not child.name.startswith(PREFIX) or not (child / MANIFEST).is_file():
            continue
        try:
            at = datetime.strptime(child.name.removeprefix(PREFIX), _STAMP).replace(tzinfo=UTC)
        except ValueError:
            continue
        found.append((at, child))
    return sorted(found, reverse=True)


def kept(backups: list[tuple[datetime, Path]], keep_daily: int, keep_weekly: int) -> set[Path]:
    """The backups the rotation keeps: the newest of each of the last ``keep_daily`` days
    and of each of the last ``keep_weekly`` ISO weeks that have a backup."""
    keep: set[Path] = set()
    days: list = []
    weeks: list = []
    for at, path in backups:  # newest first: the first seen of a day or week is its newest
        day, week = at.date(), at.isocalendar()[:2]
        if day not in days and len(days) < keep_daily:
            days.append(day)
            keep.add(path)
        if week not in weeks and len(weeks) < keep_weekly:
            weeks.append(week)
            keep.add(path)
    return keep


def rotate(directory: Path, keep_daily: int, keep_weekly: int) -> list[Path]:
    """Delete the backups the rotation does not keep; returns them."""
    backups = list_backups(directory)
    keep = kept(backups, keep_daily, keep_weekly)
    removed = [path for _, path in backups if path not in keep]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def backup_in_child(data_dir: str | os.PathLike[str], destination: Path, timeout: float = 6 * 3600) -> dict:
    """``footfall backup DESTINATION --data DATA_DIR`` in a child process; its manifest."""
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "backup", str(destination), "--data", str(data_dir)],
        capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0:
        raise BackupError("destination", done.stderr.strip().removeprefix("footfall: ") or
                          f"footfall backup exited with {done.returncode}", disk_full="disk full" in done.stderr)
    return read_manifest(destination)


def run_scheduled_backup(data_dir: str | os.PathLike[str], settings: BackupSettings,
                         targets: dict[str, BackupTarget], now: float | None = None) -> dict[str, object]:
    """One pass of the schedule; returns what it did (for the jobs' ``last_result``)."""
    if not settings.enabled:
        return {"skipped": "disabled"}
    now = time.time() if now is None else now
    directory = backups_directory(settings, data_dir)
    newest = list_backups(directory)
    if newest and now - newest[0][0].timestamp() < settings.interval_hours * 3600 - 60:
        return {"skipped": "not due", "newest": newest[0][1].name}
    destination = directory / backup_name(now)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = backup_in_child(data_dir, destination)
    removed = rotate(directory, settings.keep_daily, settings.keep_weekly)
    shipped, failed = [], {}
    for name in settings.targets:
        target = targets.get(name)
        try:
            if target is None:
                raise LookupError(f"no backup target named {name!r} (known: {', '.join(sorted(targets)) or 'none'})")
            target.ship(destination, read_manifest(destination))
            shipped.append(name)
        except Exception as error:  # one target failing must not stop the others
            log.exception("shipping backup %s to %s failed", destination.name, name)
            failed[name] = str(error)
    log.info("backup %s written: %d events, %d sites", destination.name, manifest["event_count"],
             len(manifest["sites"]))
    return {"backup": destination.name, "event_count": manifest["event_count"],
            "removed": [path.name for path in removed], "shipped": shipped, "failed": failed}
