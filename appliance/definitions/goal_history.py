"""A goal's history: its completions among the events logged before it was activated.

When a goal is created or changed it counts new events at ingest from the next batch on;
the events before (sequence below ``backfill_before``) are counted here, day by day from the
column blocks, and handed back to :class:`appliance.definitions.goals.Goals` to write in one
transaction. Progress is reported as it goes; the count stops (``None``) as soon as the goal
is changed or deleted meanwhile.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from appliance.events.block_cache import ScanBlocks
from appliance.events.blocks import DAY_MS
from appliance.events.columns import ColumnStore
from appliance.events.frames import Frame
from appliance.models import Site
from appliance.periods import day_from_number, day_number, day_start_timestamp
from storage.strings import StringTable

History = tuple[dict[int, int], dict[int, set[int]], dict[tuple[int, str], list[int]]]


def count_history(
    goal,
    site: Site,
    columns: ColumnStore,
    strings: StringTable,
    mask: Callable[[Frame, object], np.ndarray],
    still_current: Callable[[], bool],
    progress: dict[str, object],
) -> History | None:
    """Per local day: completions, converting visitors, and per currency (amount, count)."""
    first_ms = int((time.time() - site.retention_days * 86400) * 1000)
    first_day, last_day = first_ms // DAY_MS, int(time.time() * 1000) // DAY_MS + 1
    progress.update(status="running", days_done=0, days_total=0)
    completions: dict[int, int] = defaultdict(int)
    visitors: dict[int, set[int]] = defaultdict(set)
    revenue: dict[tuple[int, str], list[int]] = {}
    days = columns.days_with_events(site.id, first_day, last_day)
    progress["days_total"] = len(days)
    scan = ScanBlocks(limit=1)  # every day once: none of them kept in the shared cache
    for day in days:
        if not still_current():
            return None
        frame = columns.frame(site.id, day * DAY_MS, (day + 1) * DAY_MS, scan)
        if frame.size:
            rows = mask(frame, goal) & (frame.column("seq") < goal.backfill_before)
            if rows.any():
                local_days = local_day_numbers(frame.column("ts")[rows], site.timezone)
                for local_day, visitor in zip(local_days.tolist(), frame.column("visitor")[rows].tolist(), strict=True):
                    completions[local_day] += 1
                    visitors[local_day].add(visitor)
                amounts = frame.column("revenue")[rows]
                paid = amounts != 0
                for local_day, currency_id, amount in zip(
                    local_days[paid].tolist(), frame.column("currency")[rows][paid].tolist(), amounts[paid].tolist(),
                    strict=True,
                ):
                    entry = revenue.setdefault((local_day, strings.text(currency_id)), [0, 0])
                    entry[0] += amount
                    entry[1] += 1
        progress["days_done"] += 1
    return completions, visitors, revenue


def local_day_numbers(ts: np.ndarray, timezone: str) -> np.ndarray:
    """Local day numbers (days since 1970-01-01 in ``timezone``) of millisecond timestamps."""
    if timezone == "UTC":
        return ts // DAY_MS
    first = int(ts.min()) // DAY_MS - 1
    last = int(ts.max()) // DAY_MS + 1
    days = [day_from_number(n) for n in range(first, last + 2)]
    bounds = np.array([int(day_start_timestamp(d, timezone) * 1000) for d in days], np.int64)
    index = np.searchsorted(bounds, ts, "right") - 1
    return np.array([day_number(d) for d in days], np.int64)[index]
