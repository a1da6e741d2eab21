"""Budget and privacy guards for the hand-written browser tracker (web/static/footfall.js)."""

from __future__ import annotations

import gzip
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TRACKER = ROOT / "web" / "static" / "footfall.js"
SIZE_SCRIPT = ROOT / "scripts" / "check_tracker_size.py"
LIMIT = 1536


@pytest.fixture(scope="module")
def source() -> bytes:
    return TRACKER.read_bytes()


def test_gzipped_size_within_budget(source: bytes) -> None:
    size = len(gzip.compress(source, compresslevel=9, mtime=0))
    assert size <= LIMIT, f"footfall.js is {size} bytes gzipped (limit {LIMIT})"


def test_size_script_agrees() -> None:
    result = subprocess.run(
        [sys.executable, str(SIZE_SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bytes gzipped" in result.stdout


def test_size_script_fails_over_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.js"
    big.write_bytes(random.Random(0).randbytes(4096))  # incompressible: well over budget
    result = subprocess.run(
        [sys.executable, str(SIZE_SCRIPT), str(big)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0


@pytest.mark.parametrize(
    "pattern",
    [
        r"document\.cookie",
        r"\.cookie\b",  # also via an aliased document, e.g. d.cookie
        r"localStorage",
        r"sessionStorage",
        r"indexedDB",
    ],
)
def test_no_browser_storage(source: bytes, pattern: str) -> None:
    text = source.decode("utf-8")
    # The one exception is the opt-in new-vs-returning marker, on a line of its own that
    # only runs when the page's script tag says data-returning="on".
    lines = [line for line in text.splitlines() if 'opt.returning == "on" &&' not in line]
    assert not re.search(pattern, "\n".join(lines), re.IGNORECASE), f"tracker must not use {pattern}"


def test_storage_marker_is_opt_in(source: bytes) -> None:
    text = source.decode("utf-8")
    uses = [line for line in text.splitlines() if "localStorage" in line and not line.lstrip().startswith("//")]
    assert len(uses) == 1
    assert 'opt.returning == "on" && (' in uses[0]


def test_is_plain_ascii(source: bytes) -> None:
    # served as-is; avoid charset issues
    assert source.isascii()
