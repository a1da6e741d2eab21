#!/usr/bin/env python3
"""Two checkouts' in-process batch ingest, alternately, and whether they count alike.

Runs ``scripts/bench_batch.py`` (this checkout's copy) against ``--base`` and ``--after`` in
turn, ``--pairs`` times (base, after, base, after, ...: the machine's drift falls on both),
and prints one JSON line per run and per pair the after/before ratios of the CPU per event
(the steadier figure on a shared machine) with the load average. Exits 1 when the two
checkouts' counters, sketches or open visits differ (the digests ``bench_batch.py`` prints):
a faster path must count exactly what the base counts.

    .venv/bin/python scripts/bench_batch_ab.py --base /work/base --after . --batch 500 --pairs 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent / "bench_batch.py"
DIGESTS = ("counters_sha256", "sketches_sha256", "visits_sha256")
RATIOS = (
    "record_cpu_us_per_event", "pipeline_cpu_us_per_event", "visits_cpu_us_per_event", "sketches_cpu_us_per_event"
)


def run(root: str, args) -> dict:
    command = [sys.executable, str(BENCH), "--root", root, "--events", str(args.events), "--batch", str(args.batch),
               "--days", str(args.days), "--label", root]
    environment = dict(os.environ, PYTHONPATH=root)
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=environment).stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--days", type=float, default=0)
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    alike = True
    for pair in range(args.pairs):
        before, after = run(args.base, args), run(args.after, args)
        print(json.dumps(before))
        print(json.dumps(after))
        ratios = {
            name: round(after[name] / before[name], 3) for name in ("events_per_cpu_s", *RATIOS) if before.get(name)
        }
        same = all(before[name] == after[name] for name in DIGESTS)
        alike &= same
        load = round((before["load_average"] + after["load_average"]) / 2, 2)
        print(json.dumps({"pair": pair + 1, "batch": args.batch, "load_average": load, "same_counts": same, **ratios}))
    return 0 if alike else 1


if __name__ == "__main__":
    sys.exit(main())
