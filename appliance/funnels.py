"""Funnels: 2–8 ordered steps, completed within a visit or across visits within a window.

A step is a page pattern (``*`` wildcards), an event name (custom event or conversion type,
optionally with one property value) or a goal (by id). Each step after the first says how it
follows the previous one: ``eventually`` (any later event of the same visit) or ``directly``
(the very next event of the visit; engagement pings are not events here). With
``window_seconds`` set the funnel is followed per *visitor* across visits — meaningful when
the site sends a ``user_id``, whose hash is a stable visitor id — and every step must happen
within that many seconds of the step-1 event that started the chain.

Step completion (exact, computed over the column blocks): an event *reaches step 1* when it
matches step 1; an event reaches step k+1 when it matches step k+1 and an earlier event of
the same visit (or visitor, across visits) reached step k — for ``directly``, the event just
before it — and, with a window, the chain's start is recent enough (the latest possible
start is kept, so the check is exact). A visitor *reached* step k in the period when any of
their events did. So out-of-order steps do not count until the order is right, a repeated
step counts once, and a visit that skips a step stops at the step before the gap.

Report: visitors entering (reaching step 1), per step the visitors reaching it, those
dropping off before it (count and % of the previous step), the conversion from step 1, the
overall conversion (last step ÷ step 1), and the median seconds between the first events
that reached consecutive steps, per visit or visitor chain. Filters and segments restrict
the funnel to the visits (or, across visits, the visitors) that have a matching event.
"""

from __future__ import annotations

import threading
import time

import msgspec
import numpy as np

from appliance.filters import IdPredicate, text_predicate
from appliance.goals import DefinitionError, checked_name
from appliance.models import EventKind

STEP_KINDS = ("page", "event", "goal")
FOLLOWS = ("eventually", "directly")
_RECORD = "funnel"
MAX_FUNNELS_PER_SITE = 100


class Step(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    kind: str
    value: str  # page pattern, event name, or goal id
    prop_key: str = ""
    prop_value: str = ""
    follows: str = "eventually"  # how this step follows the previous one (ignored on step 1)
    name: str = ""


class FunnelInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    steps: list[Step]
    window_seconds: int | None = None  # None: within one visit


class Funnel(msgspec.Struct, kw_only=True):
    id: int
    site_id: int
    name: str
    steps: list[Step]
    window_seconds: int | None = None
    created_at: float = 0.0
    created_by: str = ""


def _checked(data: FunnelInput, goals, site_id: int) -> FunnelInput:
    name = checked_name(data.name)
    if not 2 <= len(data.steps) <= 8:
        raise DefinitionError("steps", "a funnel has 2 to 8 steps")
    for index, step in enumerate(data.steps):
        where = f"steps[{index}]"
        if step.kind not in STEP_KINDS:
            raise DefinitionError(f"{where}.kind", f"one of {', '.join(STEP_KINDS)}")
        if step.follows not in FOLLOWS:
            raise DefinitionError(f"{where}.follows", f"one of {', '.join(FOLLOWS)}")
        if not step.value.strip():
            raise DefinitionError(f"{where}.value", "required")
        checked_name(step.name, f"{where}.name", required=False)
        if step.kind == "goal":
            if not step.value.isdigit():
                raise DefinitionError(f"{where}.value", "a goal step names the goal's id")
            goals.get(site_id, int(step.value))
        if step.prop_value and not step.prop_key:
            raise DefinitionError(f"{where}.prop_key", "a property value needs its key")
    if data.window_seconds is not None and not 1 <= data.window_seconds <= 90 * 86400:
        raise DefinitionError("window_seconds", "between 1 second and 90 days")
    return msgspec.structs.replace(data, name=name)


class Funnels:
    def __init__(self, appliance) -> None:
        self._appliance = appliance
        self._store = appliance.store
        self._records = appliance.records
        self._lock = threading.Lock()

    def _decode(self, raw: bytes) -> Funnel:
        return msgspec.msgpack.decode(raw, type=Funnel)

    def list(self, site_id: int) -> list[Funnel]:
        prefix = f"{site_id:010d}/"
        return [self._decode(raw) for key, raw in self._records.scan(_RECORD) if key.startswith(prefix)]

    def get(self, site_id: int, funnel_id: int) -> Funnel:
        raw = self._records.get(_RECORD, f"{site_id:010d}/{funnel_id:010d}")
        if raw is None:
            raise DefinitionError("funnel_id", f"no funnel {funnel_id} on this site", 404)
        return self._decode(raw)

    def create(self, site_id: int, data: FunnelInput, author: str = "") -> Funnel:
        data = _checked(data, self._appliance.goals, site_id)
        if len(self.list(site_id)) >= MAX_FUNNELS_PER_SITE:
            raise DefinitionError("funnels", f"at most {MAX_FUNNELS_PER_SITE} funnels per site")
        made: list[Funnel] = []

        def write(txn):
            made.clear()
            funnel = Funnel(
                id=self._records.next_id(txn, "funnel"), site_id=site_id, created_at=time.time(), created_by=author,
                **msgspec.structs.asdict(data),
            )
            self._records.put(txn, _RECORD, f"{site_id:010d}/{funnel.id:010d}", msgspec.msgpack.encode(funnel))
            made.append(funnel)

        self._store.write(write)
        return made[0]

    def change(self, site_id: int, funnel_id: int, data: FunnelInput) -> Funnel:
        old = self.get(site_id, funnel_id)
        data = _checked(data, self._appliance.goals, site_id)
        funnel = Funnel(id=old.id, site_id=site_id, created_at=old.created_at, created_by=old.created_by, **msgspec.structs.asdict(data))
        self._store.write(
            lambda txn: self._records.put(txn, _RECORD, f"{site_id:010d}/{funnel_id:010d}", msgspec.msgpack.encode(funnel))
        )
        return funnel

    def delete(self, site_id: int, funnel_id: int) -> Funnel:
        funnel = self.get(site_id, funnel_id)
        self._store.write(lambda txn: self._records.delete(txn, _RECORD, f"{site_id:010d}/{funnel_id:010d}"))
        return funnel

    # -- the report -----------------------------------------------------------------------
    def report(self, query, funnel: Funnel) -> dict[str, object]:
        scans = self._appliance.stats.scans
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
        strings = self._appliance.strings
        kind = frame.column("kind")
        if step.kind == "goal":
            return self._appliance.goals.mask(frame, self._appliance.goals.get(site_id, int(step.value)))
        if step.kind == "page":
            return (kind == EventKind.PAGEVIEW) & frame.mask(
                "path", IdPredicate(text_predicate("matches", (step.value,)), strings.text)
            )
        rows = np.isin(kind, (EventKind.CUSTOM, EventKind.CONVERSION)) & frame.mask(
            "name", IdPredicate(text_predicate("is", (step.value,)), strings.text)
        )
        if step.prop_key:
            key_id = strings.lookup(step.prop_key)
            if key_id is None:
                return np.zeros(frame.size, bool)
            rows &= frame.prop_mask([key_id], IdPredicate(text_predicate("is", (step.prop_value,)), strings.text))
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
