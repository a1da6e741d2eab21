"""A debugging plugin for the soak (``scripts/bench --soak MINUTES --soak-heap``): what grows.

Loaded from a plugin directory (``FOOTFALL_PLUGINS_DIRECTORY``), it starts ``tracemalloc`` in
the server's worker process and, every ``FOOTFALL_PLUGIN_HEAPPROBE_INTERVAL`` seconds (default
60), writes ``heap-MMM.txt`` to ``FOOTFALL_PLUGIN_HEAPPROBE_DIR``: the traced heap, the allocations that
grew most since the first report (by line, and the top ones with their call stacks), the
object counts by type that grew most (``gc``), and the sizes of the appliance's caches. Never
used in production: tracing slows the server (the soak's latencies mean nothing in such a run).
"""

from __future__ import annotations

import collections
import gc
import threading
import time
import tracemalloc
from pathlib import Path

import pluggy

hookimpl = pluggy.HookimplMarker("footfall")

_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def cache_sizes(appliance) -> dict[str, object]:
    """The caches the memory budget bounds, and their share of the heap (estimated)."""
    sketches = appliance.sketches
    cache = dict(sketches._cache)
    exact = [s for s in cache.values() if s.exact is not None]
    return {
        "sketch_cache_entries": len(cache),
        "sketch_cache_exact": len(exact),
        "sketch_cache_exact_members": sum(len(s.exact) for s in exact),
        "sketch_cache_bytes": getattr(sketches, "cached_bytes", None),
        "sketch_cache_limit": getattr(sketches, "cache_limit", getattr(sketches, "_cache_size", None)),
        "open_visits": len(appliance.visits),
        "column_cache_bytes": getattr(getattr(appliance.columns, "cache", None), "cached_bytes", None),
        "string_cache": (len(appliance.strings._ids), len(appliance.strings._texts)),
        "live_buffer": len(appliance.live),
    }


class Probe(threading.Thread):
    def __init__(self, appliance, directory: Path, interval: float) -> None:
        super().__init__(name="heapprobe", daemon=True)
        self.appliance, self.directory, self.interval = appliance, directory, interval
        self.first: tracemalloc.Snapshot | None = None
        self.first_types: collections.Counter[str] = collections.Counter()
        self.started = time.monotonic()

    def run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.report()
            except Exception as error:  # a debugging aid: say so, keep going
                (self.directory / "heapprobe-error.txt").write_text(repr(error))

    def report(self) -> None:
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
        types = collections.Counter(type(item).__name__ for item in gc.get_objects())
        minute = (time.monotonic() - self.started) / 60
        lines = [f"minute {minute:.1f}; traced {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB "
                 f"(peak {tracemalloc.get_traced_memory()[1] / 2**20:.1f})",
                 f"caches: {cache_sizes(self.appliance)}"]
        if self.first is None:
            self.first, self.first_types = snapshot, types
        else:
            lines.append("grown most since the first report, by line:")
            for stat in snapshot.compare_to(self.first, "lineno")[:25]:
                lines.append(f"  {stat}")
            lines.append("grown most, with call stacks:")
            for stat in snapshot.compare_to(self.first, "traceback")[:6]:
                lines.append(f"  {stat.size_diff / 1024:+.0f} KiB, {stat.count_diff:+d} blocks")
                lines.extend(f"      {line}" for line in stat.traceback.format(limit=8))
            lines.append("object counts grown most (gc):")
            grown = sorted(((types[name] - self.first_types[name], name) for name in types), reverse=True)[:15]
            lines.extend(f"  {diff:+8d} {name} ({types[name]})" for diff, name in grown)
        (self.directory / f"heap-{minute:05.1f}.txt").write_text("\n".join(lines) + "\n")


@hookimpl
def startup(appliance) -> None:
    settings = appliance.plugin_settings("heapprobe")
    directory = Path(settings.get("dir", "."))
    directory.mkdir(parents=True, exist_ok=True)
    if not tracemalloc.is_tracing():
        tracemalloc.start(8)
    Probe(appliance, directory, float(settings.get("interval", 60))).start()
