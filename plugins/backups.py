"""The built-in backup target ``folder``: a second folder that mirrors the backups directory.

Set ``[plugins.backups] directory`` (another disk, a mounted network share) and name
``"folder"`` in ``[backup] targets``. After each scheduled backup the new backup is copied
there (into a hidden temporary name, checked against its manifest, then renamed, so the
folder never holds half a backup), and backups the rotation removed from the backups
directory are removed there too.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import hookimpl
from appliance.extensions import BackupTarget
from appliance.operations.backups import MANIFEST, verify_backup

if TYPE_CHECKING:
    from appliance.runtime.appliance import Appliance

NAME = "folder"


def ship_to_folder(directory: str, path: Path, manifest: dict) -> None:
    if not directory:
        raise ValueError("set [plugins.backups] directory to use the folder backup target")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / path.name
    partial = folder / f".{path.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(path, partial)
        verify_backup(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    source_names = {child.name for child in path.parent.iterdir()}
    for child in folder.iterdir():  # mirror the source's rotation
        if child.name not in source_names and (child / MANIFEST).is_file():
            shutil.rmtree(child, ignore_errors=True)


@hookimpl
def register_backup_targets(appliance: Appliance) -> list[BackupTarget]:
    directory = str(appliance.plugin_settings("backups").get("directory", ""))
    return [
        BackupTarget(
            name=NAME,
            ship=lambda path, manifest: ship_to_folder(directory, path, manifest),
            description="copy each backup to [plugins.backups] directory and mirror the rotation",
            options={"directory": directory},
        )
    ]
