#!/usr/bin/env python3
"""Print the gzipped size of the browser tracker; exit non-zero above the budget.

Usage: python3 scripts/check_tracker_size.py [PATH] [--limit BYTES]
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACKER = ROOT / "web" / "static" / "footfall.js"
LIMIT = 1536  # bytes, gzip level 9


def gzipped_size(path: Path) -> int:
    # mtime=0 and no filename in the header -> deterministic output
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=TRACKER)
    parser.add_argument("--limit", type=int, default=LIMIT)
    args = parser.parse_args(argv)

    if not args.path.is_file():
        print(f"tracker not found: {args.path}", file=sys.stderr)
        return 2
    raw = args.path.stat().st_size
    size = gzipped_size(args.path)
    ok = size <= args.limit
    print(
        f"{args.path.name}: {size} bytes gzipped ({raw} raw), "
        f"limit {args.limit} -> {'OK' if ok else 'TOO BIG'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
