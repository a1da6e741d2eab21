"""The order-dependent figures of one re-derived day (:mod:`appliance.ingest.rederive`).

Visits, bounces and duration per entry value of every dimension, exit pages, and the page-view
counters and visitor sketches of the visit properties, all computed from a window's
time-ordered sessions (:class:`appliance.events.sessions.Sessions`) in numpy passes.
"""

from __future__ import annotations

import numpy as np

from appliance import dimensions as dims
from appliance.events.sessions import Sessions
from appliance.models import EventKind
from storage.sketches import DIMENSION_PRECISION, Sketch

_DIMENSIONS = tuple((name, field) for name, (field, _, _) in dims.DIMENSIONS.items())
_VISIT_METRICS = tuple(
    metric for base in (dims.VISITS, dims.BOUNCES, dims.VISIT_DURATION)
    for metric in (base, *(base + 1 + offset for offset in range(len(_DIMENSIONS))))
)
_PROPERTIES = tuple(
    (field, counter, sketch, name in dims.COUNT_EMPTY)
    for name, (field, counter, sketch) in dims.DIMENSIONS.items()
    if name in dims.VISIT_PROPERTIES
)


def _grouped(ids: np.ndarray, weights: dict[int, np.ndarray], out: dict[int, dict[int, int]], keep_empty=False) -> None:
    """Per distinct id (0, the empty string, only with ``keep_empty``): ``out[metric][id]``
    = the sum of ``weights[metric]`` over its entries."""
    if not keep_empty:
        nonzero = ids != 0
        ids = ids[nonzero]
        weights = {metric: values[nonzero] for metric, values in weights.items()}
    distinct, inverse = np.unique(ids, return_inverse=True)
    for metric, values in weights.items():
        sums = np.bincount(inverse, weights=values, minlength=len(distinct)) if len(distinct) else []
        out[metric] = {int(i): int(round(s)) for i, s in zip(distinct.tolist(), list(sums), strict=True)}


def day_figures(frame, sessions: Sessions, first_ms: int, end_ms: int):
    """The order-dependent counters ``{metric: {dimension: value}}`` and sketches
    ``{metric: {dimension: Sketch}}`` of the local day ``[first_ms, end_ms)``."""
    counters: dict[int, dict[int, int]] = {metric: {} for metric in (*_VISIT_METRICS, dims.EXIT_PAGES)}
    sketches: dict[int, dict[int, Sketch]] = {}
    start = sessions.start
    starting = np.flatnonzero((start >= first_ms) & (start < end_ms))
    bounce = sessions.bounce[starting].astype(np.int64)
    # whole seconds as the live table counts them (appliance.ingest.visits.seconds)
    duration = (np.round(sessions.end[starting] / 1000) - np.round(start[starting] / 1000)).astype(np.int64)
    ones = np.ones(len(starting), np.int64)
    counters[dims.VISITS][0] = len(starting)
    counters[dims.BOUNCES][0] = int(bounce.sum())
    counters[dims.VISIT_DURATION][0] = int(duration.sum())
    rows = sessions.first_row[starting]
    for offset, (name, field) in enumerate(_DIMENSIONS):
        ids = sessions.entry_page[starting] if name == "page" else frame.values_at(field, rows)
        metrics = {dims.VISITS + 1 + offset: ones, dims.BOUNCES + 1 + offset: bounce, dims.VISIT_DURATION + 1 + offset: duration}
        _grouped(ids, metrics, counters)
    _grouped(sessions.exit_page[starting], {dims.EXIT_PAGES: ones}, counters)
    # visit properties of each page view of the day: its visit's first event's
    ts, kind = frame.column("ts"), frame.column("kind")
    views = np.flatnonzero((ts >= first_ms) & (ts < end_ms) & (kind == EventKind.PAGEVIEW))
    firsts = sessions.first_row[sessions.visit_of[views]]
    visitors = frame.values_at("visitor", views)
    for field, counter, sketch, keep_empty in _PROPERTIES:
        values = frame.values_at(field, firsts)
        if not keep_empty:
            chosen = values != 0
            values, who = values[chosen], visitors[chosen]
        else:
            who = visitors
        _grouped(values, {counter: np.ones(len(values), np.int64)}, counters, keep_empty=True)
        members: dict[int, Sketch] = {}
        sketches[sketch] = members
        if not len(values):
            continue
        order = np.argsort(values, kind="stable")
        distinct, bounds = np.unique(values[order], return_index=True)
        for value, group in zip(distinct.tolist(), np.split(who[order], bounds[1:]), strict=True):
            # (from the array: a busy value's page views as Python ints, and a set of them,
            # were ~20 MB at the day's heap peak)
            members[value] = made = Sketch(DIMENSION_PRECISION)
            made.add_array(group)
    return counters, sketches
