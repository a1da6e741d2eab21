#!/usr/bin/env python3
"""In-process batch ingest benchmark: the pipeline and the commit + aggregation, no HTTP.

Opens an appliance on a temporary data dir and pushes ``--events`` generated page views
(a few thousand visitors, realistic user agents, referrers, UTM tags and paths, a few custom
events, over the last ``--days`` days, fixed seed) through it the way the importer and the
batch API do: ``Pipeline.process`` for every event of a batch of ``--batch``, then
``Appliance.record_sync`` (the commit, then the aggregation step: visits, counters, sketches,
goals). Prints one JSON line: events/s and µs/event overall and per phase (wall and CPU),
the CPU of the visit table's and the sketches' steps per event, the store's size per event (pages in use, and data.mdb's file size), the replication
journal's rows, peak RSS, and digests of the counters, sketches and open visits databases so
two code versions can be checked to count alike (the open visits as a restart reads them
back, and whether that is the table in memory).

    .venv/bin/python scripts/bench_batch.py [--events 200000] [--batch 500] [--profile FILE]
    /work/main/.venv/bin/python scripts/bench_batch.py --root /work/main   # another checkout

``--journal-ab`` alternates batches with the replication journal kept and not kept (on, off,
off, on, ...) in one process and reports the commit + aggregation CPU per event of each: the
journal's own cost, with the machine's drift shared by both halves.

``--profile FILE`` writes cProfile stats of the whole run (``python -m pstats FILE``); it runs
the writer thread's commit on the calling thread so that the profile sees it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import os
import random
import resource
import sys
import tempfile
import time
import types
from pathlib import Path

import msgspec


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--days", type=float, default=0,
                        help="back-fill: events over the last DAYS days, as an import sends them (default: live "
                             "traffic, each event received as it happens, over two hours)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                        help="the checkout whose code to run")
    parser.add_argument("--profile", help="write cProfile stats here")
    parser.add_argument("--label", default="")
    parser.add_argument("--journal-ab", action="store_true",
                        help="alternate batches with the replication journal kept and not kept (this checkout's "
                             "code only) and report the commit + aggregation CPU of each")
    args = parser.parse_args()
    sys.path.insert(0, args.root)
    if args.journal_ab:  # kept always: the hourly trim must not switch it off behind the benchmark's back
        os.environ["FOOTFALL_REPLICATION_JOURNAL_ALWAYS"] = "true"

    from appliance.cli.demo import PAGES, SOURCES, USER_AGENTS
    from appliance.config import load_settings
    from appliance.ingest.drafts import Dropped, InvalidInput, draft_from_collect_body
    from appliance.models import CollectBody, RequestContext
    from appliance.runtime.appliance import Appliance

    # The visitor-id secret and daily salts from a seeded generator instead of os.urandom, so
    # that two runs (two checkouts) give the same visitor ids and their sketch and visit
    # databases can be compared by digest (a benchmark's data dir only).
    visitor_ids = importlib.import_module("appliance.ingest.visitors")
    secrets_rng = random.Random(f"bench-secrets-{args.seed}")
    visitor_ids.os = types.SimpleNamespace(urandom=secrets_rng.randbytes)

    rng = random.Random(args.seed)
    visitors = [(f"198.51.{rng.randrange(256)}.{rng.randrange(256)}", rng.choice(USER_AGENTS)[0])
                for _ in range(max(100, args.events // 8))]
    now = time.time()
    midnight = now // 86400 * 86400  # times fixed for the day: runs count alike (counters_sha256)
    if args.days:  # history: every event older than the appliance's start, "late" for the visit table
        span = args.days * 86400
        stamps = sorted(midnight - span + rng.uniform(0, span) for _ in range(args.events))
    else:  # live, from tomorrow 00:00 on: received when it happens (nothing compares it with the clock)
        stamps = sorted(midnight + 86400 + rng.uniform(0, 7200) for _ in range(args.events))
    bodies = []
    for stamp in stamps:
        ip, agent = rng.choice(visitors)
        referrer, query, _ = rng.choice(SOURCES)
        path = rng.choice(PAGES)[0]
        url = f"https://bench.example{path}" + (f"?{query}" if query else "")
        if rng.random() < 0.05:
            body = CollectBody(k="event", u=url, n="Signup", p={"plan": rng.choice(("free", "pro"))})
        else:
            body = CollectBody(u=url, r=referrer or None, l=rng.choice(("en-US", "de-DE", "fr-FR")))
        bodies.append((stamp, ip, agent, body))
    # The generated input is the benchmark's, not the appliance's: kept out of the garbage
    # collector's scans (an importer streams its file; it never holds every event at once).
    gc.collect()
    gc.freeze()

    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as scratch, Appliance(load_settings(None, data_dir=scratch)) as appliance:
        appliance.sites.add("bench.example")
        try:  # as the served process's job runner does when it starts: ended weeks and months sealed
            from appliance.runtime.jobs import seal
        except ImportError:  # a checkout from before sealed rollups
            pass
        else:
            seal(appliance)
        pipeline = appliance.pipeline
        steps_cpu = {"visits": 0.0, "sketches": 0.0}  # CPU of the aggregation's two costliest steps
        for step, owner, method in (("visits", appliance.visits, "apply"), ("sketches", appliance.sketches, "add")):
            setattr(owner, method, _timed(getattr(owner, method), steps_cpu, step))
        t_pipe = c_pipe = t_rec = c_rec = 0.0
        stored = dropped = 0
        if profiler is not None:
            profiler.enable()
        began, began_cpu = time.perf_counter(), time.process_time()
        journal_cpu = {True: [0.0, 0], False: [0.0, 0]}  # kept: [CPU seconds, events]
        for number, start in enumerate(range(0, len(bodies), args.batch)):
            kept = number % 4 in (0, 3)  # on, off, off, on: a drift of the machine cancels out
            if args.journal_ab:
                appliance.recorder.journal = appliance.journal if kept else None
            w0, c0 = time.perf_counter(), time.process_time()
            events = []
            for stamp, ip, agent, body in bodies[start:start + args.batch]:
                context = RequestContext(client_ip=ip, user_agent=agent, received_at=max(stamp, now))
                draft = draft_from_collect_body(body)
                if args.days:
                    draft.timestamp = stamp
                try:
                    events.append(pipeline.process(draft, context))
                except (Dropped, InvalidInput):
                    dropped += 1
            w1, c1 = time.perf_counter(), time.process_time()
            if events and args.profile:  # the writer thread's work on this thread, for cProfile
                keys = appliance.recorder.commit(events)
                appliance.coordinator.flush()
                appliance._after_commit(events, keys)
            elif events:
                appliance.record_sync(events)
            stored += len(events)
            w2, c2 = time.perf_counter(), time.process_time()
            journal_cpu[kept][0] += c2 - c1
            journal_cpu[kept][1] += len(events)
            t_pipe += w1 - w0
            c_pipe += c1 - c0
            t_rec += w2 - w1
            c_rec += c2 - c1
        wall, cpu = time.perf_counter() - began, time.process_time() - began_cpu
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        digests = {}
        used_bytes, _ = appliance.store.map_usage()  # pages in use: the store's real size
        file_bytes = (Path(scratch) / "footfall.lmdb" / "data.mdb").stat().st_size
        with appliance.store.read() as txn:
            journal_rows = txn.stat(appliance.store.db(b"journal"))["entries"]
            for name in ("counters", "sketches"):
                digest = digests[name] = hashlib.sha256()
                for key, value in txn.cursor(db=appliance.store.db(name.encode())):
                    digest.update(key)
                    digest.update(value)
        # the open visits as a restart reads them from the store (whatever its layout there),
        # and whether that is the table the process holds
        reread = type(appliance.visits)(appliance.store, appliance.visits.timeout, appliance.visits.max_open)._open
        digest = digests["visits"] = hashlib.sha256()
        encode = msgspec.msgpack.Encoder().encode
        for key in sorted(reread):
            digest.update(encode((key, reread[key])))
        visits_reread_alike = reread == appliance.visits._open
    n = args.events
    result = {
        "label": args.label or args.root,
        "events": n,
        "stored": stored,
        "dropped": dropped,
        "batch": args.batch,
        "events_per_s": round(n / wall),
        "events_per_cpu_s": round(n / cpu),
        "us_per_event": round(wall / n * 1e6, 1),
        "pipeline_us_per_event": round(t_pipe / n * 1e6, 1),
        "pipeline_cpu_us_per_event": round(c_pipe / n * 1e6, 1),
        "record_us_per_event": round(t_rec / n * 1e6, 1),
        "record_cpu_us_per_event": round(c_rec / n * 1e6, 1),
        "visits_cpu_us_per_event": round(steps_cpu["visits"] / n * 1e6, 2),
        "sketches_cpu_us_per_event": round(steps_cpu["sketches"] / n * 1e6, 2),
        "store_used_bytes_per_event": round(used_bytes / n, 1),
        "data_mdb_bytes_per_event": round(file_bytes / n, 1),
        "journal_rows": journal_rows,
        **({
            "journal_kept_record_cpu_us_per_event": round(journal_cpu[True][0] / journal_cpu[True][1] * 1e6, 2),
            "journal_off_record_cpu_us_per_event": round(journal_cpu[False][0] / journal_cpu[False][1] * 1e6, 2),
        } if args.journal_ab else {}),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "load_average": os.getloadavg()[0],
        "counters_sha256": digests["counters"].hexdigest()[:16],
        "sketches_sha256": digests["sketches"].hexdigest()[:16],
        "visits_sha256": digests["visits"].hexdigest()[:16],
        "visits_reread_alike": visits_reread_alike,
    }
    print(json.dumps(result))
    return 0


def _timed(method, totals: dict, name: str):
    """``method`` adding its CPU seconds to ``totals[name]`` (an instance attribute over the class's)."""

    def timed(*args, **kwargs):
        began = time.process_time()
        try:
            return method(*args, **kwargs)
        finally:
            totals[name] += time.process_time() - began

    return timed


if __name__ == "__main__":
    sys.exit(main())
