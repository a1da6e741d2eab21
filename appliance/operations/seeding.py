"""Seeding a standby: a consistent copy of the primary's store, then its journal from there.

The primary keeps the replication journal only while a standby needs it
(:mod:`appliance.operations.replication`), so a standby that attaches later, or comes back
after ``journal_hours``, finds no journal covering its cursor (410). A new standby is then
*seeded*:

- the primary (``GET /api/v1/replication/seed``, :func:`seed_archive`) first starts its journal
  (:meth:`ReplicationSource.seed <appliance.operations.replication.ReplicationSource.seed>`),
  then takes a backup from one read transaction (:func:`appliance.operations.backups.make_backup`:
  no pause for writers) and sends it as a tar archive. Every event after the copy's last one is
  in the journal.
- ``footfall serve --follow`` (:func:`seed_standby`) with an empty data dir asks the primary for
  the events after 0; if the journal does not hold them, it downloads the archive, verifies
  and restores it like ``footfall restore`` (:func:`appliance.operations.restore.restore_backup`),
  and forgets what was the primary's own replication state in the copy (its journal, a cursor
  and promotion of its own past as a standby). The follower then starts from the copy's last
  event (it has no cursor yet: :class:`appliance.operations.following.Follower`).

A standby that already holds data and falls behind the journal is not wiped by itself: its
status shows the 410 (``last_error``); stop it, empty its data dir and start it again.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from appliance.operations.backups import STORE_DIRECTORY, BackupError, is_disk_full
from appliance.operations.following import LOCAL_KINDS
from appliance.operations.replication import ReplicationSource
from appliance.operations.restore import restore_backup
from storage import Store
from storage.records import Records
from storage.snapshot import DATA_FILE

#: a seed being made inside the primary's data dir, and one being received in the standby's
#: (the prefix keeps them out of backups and of a restore's emptiness check)
SEED_PREFIX = ".restore-seed-"
SEEDING_PREFIX = ".restore-seeding-"
_CHUNK = 1 << 20
SEED_PATH = "/api/v1/replication/seed"


def seed_archive(source: ReplicationSource, data_dir: str) -> Iterator[bytes]:
    """Make a seed for a standby and return its tar archive's bytes, chunk by chunk; the
    archive's folder inside ``data_dir`` is removed once the last chunk is read (or the
    iterator is dropped). Raises :class:`BackupError` before the first chunk (a full disk:
    ``disk_full``)."""
    _remove_stale_seeds(Path(data_dir))
    folder = Path(tempfile.mkdtemp(prefix=SEED_PREFIX, dir=data_dir))
    try:
        backup = folder / "backup"
        source.seed(data_dir, str(backup))
        archive = folder / "seed.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(backup, arcname=".")
        shutil.rmtree(backup)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _chunks(archive, folder)


def _remove_stale_seeds(data: Path, older_than_seconds: float = 3600.0) -> None:
    """A seed whose answer never started (the standby went away first) leaves its folder:
    the next seed removes those older than an hour."""
    now = time.time()
    for stale in data.glob(f"{SEED_PREFIX}*"):
        if now - stale.stat().st_mtime > older_than_seconds:
            shutil.rmtree(stale, ignore_errors=True)


def _chunks(archive: Path, folder: Path) -> Iterator[bytes]:
    try:
        with open(archive, "rb") as reader:
            while chunk := reader.read(_CHUNK):
                yield chunk
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def needs_seed(data_dir: str | Path) -> bool:
    """Whether this standby's data dir is new: no store in it yet."""
    return not (Path(data_dir) / STORE_DIRECTORY / DATA_FILE).exists()


def seed_standby(data_dir: str | Path, primary: str, token: str, *, timeout: float = 600.0) -> dict | None:
    """Seed a new standby's empty ``data_dir`` from ``primary`` when its journal does not
    reach back to the first event; returns the restored backup's manifest, None when no seed
    was needed (the standby then follows from the first event). Raises :class:`BackupError`
    (the primary refused, a damaged download, a full disk)."""
    import httpx  # only a standby needs an HTTP client: not every start of the server pays for it

    headers = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=primary.rstrip("/"), headers=headers,
                          timeout=httpx.Timeout(30.0, read=timeout)) as client:
            manifest = _receive_seed(client, Path(data_dir), primary)
    except httpx.HTTPError as error:
        raise BackupError(None, f"could not reach the primary {primary}: {error}") from error
    except OSError as error:  # the seed could not be written here (a full disk)
        raise BackupError(None, f"could not receive the seed into {data_dir}: {error}",
                          disk_full=is_disk_full(error)) from error
    if manifest is not None:
        _forget_primary_state(Path(data_dir) / STORE_DIRECTORY)
    return manifest


def _receive_seed(client, data: Path, primary: str) -> dict | None:
    probe = client.get("/api/v1/replication/events", params={"after": 0, "limit": 1})
    if probe.status_code == 200:
        return None  # the journal holds everything: follow from the start
    if probe.status_code != 410:
        raise BackupError(None, f"the primary {primary} answered {probe.status_code}: {probe.text[:300]}")
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=SEEDING_PREFIX, dir=data, ignore_cleanup_errors=True) as folder:
        archive = Path(folder) / "seed.tar"
        with client.stream("GET", SEED_PATH) as answer:
            if answer.status_code != 200:
                answer.read()
                raise BackupError(None, f"the primary {primary} refused a seed ({answer.status_code}): "
                                        f"{answer.text[:300]}")
            with open(archive, "wb") as writer:
                for chunk in answer.iter_bytes(_CHUNK):
                    writer.write(chunk)
        unpacked = Path(folder) / "backup"
        _extract(archive, unpacked)
        archive.unlink()
        return restore_backup(unpacked, data)


def _extract(archive: Path, target: Path) -> None:
    """Unpack the seed: plain files and folders inside ``target`` only."""
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4 on
            tar.extractall(target, filter="data")
            return
        for member in tar.getmembers():
            if not (member.isfile() or member.isdir()) or member.name.startswith("/") or ".." in Path(member.name).parts:
                raise BackupError(None, f"the seed holds an unexpected entry: {member.name}")
        tar.extractall(target)  # noqa: S202 - every member checked above


def _forget_primary_state(path: Path) -> None:
    """The copy is the primary's store: drop its journal, its own replication state (a
    cursor, a promotion) and its sign-in sessions, so this data dir follows from the copy's
    last event, journals only when a standby of its own needs it, and has its own sign-ins."""
    store = Store(path)
    try:
        records = Records(store)

        def write(txn):
            for name in (b"journal", b"journal_meta", b"replication"):
                txn.drop(store.db(name), delete=False)
            for kind in LOCAL_KINDS:
                records.delete_prefixed(txn, kind, "")

        store.write(write)
    finally:
        store.close()
