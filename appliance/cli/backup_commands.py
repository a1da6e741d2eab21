"""``footfall backup DEST``, ``footfall restore SRC`` and ``footfall backup-verify SRC``.

``backup`` opens the data dir's store read-only in its own process (no writer lock, no
request to the server): an LMDB reader never waits for the writer nor makes it wait, so it
works the same whether a server runs on the data dir or not, and the server keeps ingesting.
``restore`` takes the data dir's writer lock for its whole run, so it refuses while a server
(or another command) owns the data dir, and a server cannot start on a half-restored one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from appliance.config import Settings, load_settings
from appliance.operations.backups import STORE_DIRECTORY, BackupError, make_backup, verify_backup
from appliance.operations.restore import restore_backup
from appliance.runtime.ownership import WriterLock
from storage.snapshot import ReadOnlyStore


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, data_dir=args.data)


def _summary(manifest: dict) -> str:
    sites = ", ".join(manifest["sites"]) or "no sites"
    size = sum(entry["bytes"] for entry in manifest["files"].values())
    return (f"{manifest['event_count']} events, {len(manifest['sites'])} sites ({sites}), "
            f"{len(manifest['files'])} files, {size / 1e6:.1f} MB, made {manifest['created_at']} "
            f"by Footfall {manifest['footfall_version']}")


def cmd_backup(args: argparse.Namespace) -> int:
    data = Path(_settings(args).data_dir)
    try:
        store = ReadOnlyStore(data / STORE_DIRECTORY)
    except FileNotFoundError:
        raise BackupError("data", f"no Footfall data in {data}") from None
    with store:
        manifest = make_backup(store, data, args.destination)
    print(f"backed up {data} to {args.destination}: {_summary(manifest)}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    data = Path(_settings(args).data_dir)
    with WriterLock(data, "footfall restore"):
        manifest = restore_backup(args.source, data, force=args.force)
    print(f"restored {args.source} into {data}: {_summary(manifest)}")
    return 0


def cmd_backup_verify(args: argparse.Namespace) -> int:
    manifest = verify_backup(args.source)
    print(f"{args.source}: every checksum matches; {_summary(manifest)}")
    return 0


def add_backup_commands(commands, common: argparse.ArgumentParser) -> None:
    backup = commands.add_parser(
        "backup", parents=[common],
        help="copy the data dir to a new directory, consistently, while the server keeps running",
    )
    backup.add_argument("destination", help="a new (or empty) directory")
    backup.set_defaults(func=cmd_backup)
    restore = commands.add_parser(
        "restore", parents=[common], help="restore a backup into an empty data dir (no server running on it)",
    )
    restore.add_argument("source", help="a directory written by footfall backup")
    restore.add_argument("--force", action="store_true", help="replace a non-empty data dir's contents")
    restore.set_defaults(func=cmd_restore)
    verify = commands.add_parser("backup-verify", parents=[common], help="check a backup's files against its manifest")
    verify.add_argument("source")
    verify.set_defaults(func=cmd_backup_verify)
