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

Report (:mod:`appliance.query.funnel_report`): visitors entering (reaching step 1), per step the visitors reaching it, those
dropping off before it (count and % of the previous step), the conversion from step 1, the
overall conversion (last step ÷ step 1), and the median seconds between the first events
that reached consecutive steps, per visit or visitor chain. Filters and segments restrict
the funnel to the visits (or, across visits, the visitors) that have a matching event.
"""

from __future__ import annotations

import threading
import time

import msgspec

from appliance.definitions.common import DefinitionError, check_definition_pattern, checked_name
from appliance.definitions.goals import Goals
from storage import Store
from storage.records import Records

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
        if step.kind == "page":
            check_definition_pattern(step.value, f"{where}.value")
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
    """The funnels of every site: definitions and their records (the report is
    :mod:`appliance.query.funnel_report`)."""

    def __init__(self, store: Store, records: Records, goals: Goals) -> None:
        self._store = store
        self._records = records
        self._goals = goals
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
        data = _checked(data, self._goals, site_id)
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
        data = _checked(data, self._goals, site_id)
        funnel = Funnel(id=old.id, site_id=site_id, created_at=old.created_at, created_by=old.created_by, **msgspec.structs.asdict(data))
        self._store.write(
            lambda txn: self._records.put(txn, _RECORD, f"{site_id:010d}/{funnel_id:010d}", msgspec.msgpack.encode(funnel))
        )
        return funnel

    def delete(self, site_id: int, funnel_id: int) -> Funnel:
        funnel = self.get(site_id, funnel_id)
        self._store.write(lambda txn: self._records.delete(txn, _RECORD, f"{site_id:010d}/{funnel_id:010d}"))
        return funnel
