"""The funnel report: visitors per step, drop-off, conversion and time between steps.

The rules (what reaching a step means, ``eventually`` and ``directly``, windows across
visits) are in :mod:`appliance.definitions.funnels`; here they are computed exactly over the
period's column blocks, sorted by visit (or visitor) and time.
"""

from __future__ import annotations

import numpy as np

from appliance.definitions.funnels import Funnel, Step
from appliance.filters import IdPredicate, text_predicate
from appliance.models import EventKind
from appliance.query.spec import Query


class FunnelReports:
    def __init__(self, scans) -> None:
        self._scans = scans

    def report(self, query: Query, funnel: Funnel) -> dict[str, object]:
        scans = self._scans
        selection = scans.select(query)
        frame = selection.frame
        kind = selection.kind
        active = np.flatnonzero(kind != EventKind.ENGAGEMENT)
        visitor = frame.column("visitor")
        across_visits = funnel.window_seconds is not None
        if across_visits:
            keep_visitors = np.unique(visitor[selection.active])
            active = active[np.isin(visitor[active], keep_visitors)]
            order = active[np.argsort(visitor[active], kind="stable")]
            group_sorted = np.cumsum(np.r_[True, visitor[order][1:] != visitor[order][:-1]]) - 1 if len(order) else np.zeros(0, np.int64)
        else:
            sessions = selection.sessions
            keep = selection.visits
            order = sessions.order
            group_sorted = sessions.visit_of[order]
            inside = keep[group_sorted]
            order, group_sorted = order[inside], group_sorted[inside]
        ts = frame.column("ts")[order]
        step_masks = [self._step_mask(frame, step, query.site.id)[order] for step in funnel.steps]
        window_ms = funnel.window_seconds * 1000 if across_visits else None
        reached, first_time = _reach(group_sorted, ts, step_masks, [s.follows for s in funnel.steps], window_ms)
        group_visitor = visitor[order]
        steps_out = []
        previous_count = None
        entering = 0
        for index, step in enumerate(funnel.steps):
            count = len(np.unique(group_visitor[reached[index]]))
            if index == 0:
                entering = count
            dropped = (previous_count - count) if previous_count is not None else 0
            times = first_time[index] - first_time[index - 1] if index else None
            median = None
            if times is not None:
                valid = (first_time[index] >= 0) & (first_time[index - 1] >= 0)
                if valid.any():
                    median = round(float(np.median(times[valid])) / 1000, 1)
            steps_out.append(
                {
                    "step": index + 1,
                    "name": step.name or f"{step.kind}: {step.value}",
                    "visitors": count,
                    "dropoff": dropped,
                    "dropoff_rate": round(100 * dropped / previous_count, 2) if previous_count else 0.0,
                    "conversion_rate": round(100 * count / entering, 2) if entering else 0.0,
                    "conversion_rate_step": round(100 * count / previous_count, 2) if previous_count else (100.0 if count else 0.0),
                    "median_seconds_from_previous": median,
                }
            )
            previous_count = count
        last = steps_out[-1]["visitors"]
        return {
            "funnel_id": funnel.id,
            "name": funnel.name,
            "mode": "visitor_window" if across_visits else "visit",
            "window_seconds": funnel.window_seconds,
            "entering_visitors": entering,
            "completed_visitors": last,
            "conversion_rate": round(100 * last / entering, 2) if entering else 0.0,
            "steps": steps_out,
        }

    def _step_mask(self, frame, step: Step, site_id: int) -> np.ndarray:
        scans = self._scans
        kind = frame.column("kind")
        if step.kind == "goal":
            return scans.goals.mask(frame, scans.goals.get(site_id, int(step.value)))
        if step.kind == "page":
            return (kind == EventKind.PAGEVIEW) & frame.mask(
                "path", IdPredicate(text_predicate("matches", (step.value,)), scans.text)
            )
        rows = np.isin(kind, (EventKind.CUSTOM, EventKind.CONVERSION)) & frame.mask(
            "name", IdPredicate(text_predicate("is", (step.value,)), scans.text)
        )
        if step.prop_key:
            key_id = scans.lookup(step.prop_key)
            if key_id is None:
                return np.zeros(frame.size, bool)
            rows &= frame.prop_mask([key_id], IdPredicate(text_predicate("is", (step.prop_value,)), scans.text))
        return rows


def _reach(group: np.ndarray, ts: np.ndarray, matches: list[np.ndarray], follows: list[str], window_ms: int | None):
    """Which sorted rows reach each step, and per group the time each step was first reached.

    Rows are sorted by group, then time. ``start[k]`` holds, for rows reaching step k, the
    latest step-1 time among chains that lead to them (-1 elsewhere); a row reaches step k+1
    if it matches it and the best start available before it (all earlier rows of its group
    for ``eventually``, the previous row for ``directly``) exists and lies within the window.
    Returns ``(reached per step, first time per step per group: -1 when never)``.
    """
    count = len(group)
    groups = int(group.max()) + 1 if count else 0
    reached: list[np.ndarray] = []
    first_time: list[np.ndarray] = []
    start = np.where(matches[0], ts, -1)
    for index, mask in enumerate(matches):
        if index:
            if follows[index] == "directly":
                best = np.full(count, -1, np.int64)
                if count > 1:
                    same = group[1:] == group[:-1]
                    best[1:] = np.where(same, start[:-1], -1)
            else:
                best = _previous_max_in_group(group, start)
            ok = mask & (best >= 0)
            if window_ms is not None:
                ok &= ts - best <= window_ms
            start = np.where(ok, best, -1)
        hit = start >= 0
        reached.append(hit)
        times = np.full(groups, np.iinfo(np.int64).max, np.int64)
        np.minimum.at(times, group[hit], ts[hit])
        times[times == np.iinfo(np.int64).max] = -1
        first_time.append(times)
    return reached, first_time


def _previous_max_in_group(group: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each row, the maximum of ``values`` (>= 0, or -1 for none) over the *earlier* rows of
    its group; -1 when there is none.

    A running maximum over the whole array, made to restart per group by lifting each group's
    values above every earlier group's: ``group × span + (value − low + 1)``, 0 meaning none.
    """
    count = len(group)
    out = np.full(count, -1, np.int64)
    real = values >= 0
    if count < 2 or not real.any():
        return out
    low = int(values[real].min())
    shifted = np.where(real, values - low + 1, 0).astype(np.int64)
    span = int(shifted.max()) + 1
    lifted = group.astype(np.int64) * span + shifted
    running = np.maximum.accumulate(lifted)[:-1]
    same = (running // span) == group[1:]
    remainder = running % span
    out[1:] = np.where(same & (remainder > 0), remainder + low - 1, -1)
    return out
