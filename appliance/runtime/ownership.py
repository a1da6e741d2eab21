"""One writer per data dir: the process that owns a data dir's event path holds a lock.

Events are committed to the event log and to ``pending``, and folded into counters and
sketches later by the process that committed them (see :mod:`appliance.runtime.appliance`).
A second process doing the same on the same LMDB file would fold the first one's pending
events in a second time. So the process that opens a full Appliance (the server's worker,
or a command such as ``footfall demo`` when no server runs) takes an exclusive
``flock`` on ``<data>/footfall.lock`` and writes its pid and role into it, for messages.
The kernel releases the lock when the process ends, however it ends: a stale file never
blocks anyone. Commands that only manage records (users, sites, API keys, the audit log) do
not need it: they open a :class:`~appliance.runtime.records.RecordsSession`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = "footfall.lock"
SERVER_ROLE = "server"
# The server's worker waits this long for the lock: a previous worker (granian respawning
# it, a restart) may still be committing and closing.
SERVER_LOCK_WAIT_SECONDS = 30.0
_POLL_SECONDS = 0.05


class DataDirBusy(RuntimeError):
    """Another process owns the data dir's writes of events."""

    def __init__(self, data_dir: Path, pid: int | None, role: str) -> None:
        self.data_dir = data_dir
        self.pid = pid
        self.role = role
        who = f"pid {pid}" if pid else "pid unknown"
        if role == SERVER_ROLE:
            message = (
                f"a server is running on this data dir ({data_dir}, {who}): "
                "use the dashboard/API, or stop it"
            )
        else:
            what = f"'{role}'" if role else "another footfall process"
            message = f"{data_dir} is in use by {what} ({who}); try again when it has finished"
        super().__init__(message)


def lock_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / LOCK_FILE


def read_owner(data_dir: str | os.PathLike[str]) -> tuple[int | None, str]:
    """The (pid, role) last written into the lock file; (None, "") if unreadable."""
    try:
        first, _, rest = lock_path(data_dir).read_text().partition("\n")
        return int(first), rest.strip()
    except (OSError, ValueError):
        return None, ""


class WriterLock:
    """The exclusive lock on a data dir. ``acquire`` raises :class:`DataDirBusy` when another
    process (or another open of this process) holds it past ``wait`` seconds."""

    def __init__(self, data_dir: str | os.PathLike[str], role: str = "") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.role = role
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait: float = 0.0) -> WriterLock:
        if self._fd is not None:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path(self.data_dir), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + wait
        waited = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise DataDirBusy(self.data_dir, *read_owner(self.data_dir)) from None
                    if not waited:
                        waited = True
                        pid, role = read_owner(self.data_dir)
                        log.warning("waiting up to %.0f s for %s (pid %s) to release %s",
                                    wait, role or "another process", pid or "unknown", self.data_dir)
                    time.sleep(_POLL_SECONDS)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{self.role}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale pid left behind for messages
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

