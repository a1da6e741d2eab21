"""Fixtures for the end-to-end room: a real Chromium (Debian's, driven by Playwright), small
real disks, and the days a test's events can be on.

``browser`` is one headless Chromium per test module. Tests skip cleanly where Debian's
``chromium`` is missing (``scripts/test`` installs it). ``tmpfs(path, size)`` mounts a real
tmpfs of ``size`` (``"32k"``, ``"48m"``) for disk-full tests; it skips where mounting needs a
root this run does not have. ``utc_days_since(first)`` is the period from a UTC day taken
before sending through today: the server stamps an event with its own clock on receipt, so a
run that crosses midnight (UTC, a new site's time zone) must not ask one day fixed before it.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` mounted at ``mount`` (created) for the block; unmounted after."""
    mount.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no mount command")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def utc_today() -> date:
    return datetime.now(UTC).date()


def utc_days_since(first: date) -> dict[str, str]:
    """``start_date`` and ``end_date`` from ``first`` through today (UTC). With ``first`` taken
    before the first event was sent, the period holds every event the server received since,
    on either side of a midnight the run crossed."""
    return {"start_date": first.isoformat(), "end_date": utc_today().isoformat()}
