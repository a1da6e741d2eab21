"""Goals: what counts as a conversion for a site, counted at ingest and back-filled from the log.

A goal is one of:
- ``page``: a page view whose path matches ``page`` (``*`` wildcards, as filters);
- ``event``: a custom event named ``event``, optionally only with property ``prop_key`` equal
  to ``prop_value``;
- ``conversion``: a ``/api/v1/conversions`` (or ``footfall.convert``) event of type
  ``event``, optionally with a property value.

Completing a goal is one matching event. Per goal and local day the ingest path keeps the
completions, a visitor sketch, and per currency the revenue (integer minor units) and the number
of completions carrying it. Those counters are keyed by the goal's ``counter_id``, which is new
whenever the definition changes, so a changed goal starts from clean counters.

Back-fill: creating or changing a goal first aggregates every committed event, then, in one
write transaction, stores the definition, reads the event-log sequence ``S`` that the next batch
will receive and activates the goal for aggregation — all under the appliance's write mutex, so
no batch is committed or aggregated in between. A background thread then counts the logged
events with sequence ``< S`` from the column blocks and adds them in one transaction that also
marks the goal back-filled: every event is counted exactly once, and an interrupted back-fill (a
restart) starts again from nothing. Progress is reported in the goal's ``backfill`` field.

Conversion rate of a goal = unique visitors who completed it ÷ unique visitors, × 100, for the
period (and, through the filtered path, per dimension value).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

import msgspec
import numpy as np

from appliance.definitions.common import DefinitionError, check_definition_pattern, checked_name
from appliance.definitions.goal_history import count_history
from appliance.definitions.tasks import BackgroundTasks
from appliance.events.columns import ColumnStore
from appliance.events.coordinator import WriteCoordinator
from appliance.filters import IdPredicate, Wildcard, text_predicate
from appliance.models import Event, EventKind
from appliance.periods import (
    day_bucket,
)
from appliance.sites import SiteRegistry
from storage import Store
from storage.counters import Counters
from storage.keys import DAY, pack_bucket_key, unpack_u64
from storage.records import Records
from storage.sketches import DIMENSION_PRECISION, Sketches
from storage.strings import StringTable

log = logging.getLogger(__name__)

# Metric ids (storage keys; see appliance.dimensions — never renumber).
GOAL_COMPLETIONS = 50  # dimension: counter id
GOAL_REVENUE = 51  # dimension: id of "counter id\x1fcurrency", minor units
GOAL_REVENUE_EVENTS = 52  # dimension as GOAL_REVENUE: completions carrying that currency
GOAL_VISITORS = 150  # sketch per counter id
KINDS = ("page", "event", "conversion")
MAX_GOALS_PER_SITE = 200
_RECORD = "goal"
SEPARATOR = "\x1f"  # between a goal's counter id and a currency


class Goal(msgspec.Struct, kw_only=True):
    id: int
    site_id: int
    name: str
    kind: str
    page: str = ""
    event: str = ""
    prop_key: str = ""
    prop_value: str = ""
    counter_id: int = 0
    backfill_before: int = 0  # event-log sequence: older events come from the back-fill
    backfilled: bool = False
    created_at: float = 0.0
    created_by: str = ""


class GoalInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A goal as the API takes it (create, or change with every field given)."""

    name: str
    kind: str
    page: str = ""
    event: str = ""
    prop_key: str = ""
    prop_value: str = ""


def checked(data: GoalInput) -> GoalInput:
    name = checked_name(data.name)
    if data.kind not in KINDS:
        raise DefinitionError("kind", f"one of {', '.join(KINDS)}")
    if data.kind == "page":
        if not data.page.strip() or data.event:
            raise DefinitionError("page", "a page goal needs a page pattern (and no event)")
        check_definition_pattern(data.page, "page")
    elif not data.event.strip() or data.page:
        raise DefinitionError("event", f"a {data.kind} goal needs an event name (and no page)")
    if bool(data.prop_value) and not data.prop_key:
        raise DefinitionError("prop_key", "a property value needs its key")
    if data.kind == "page" and data.prop_key:
        raise DefinitionError("prop_key", "page goals take no property")
    return msgspec.structs.replace(data, name=name)


class _Matcher:
    """Tests one goal against events on the ingest path (page tests memoised per path)."""

    def __init__(self, goal: Goal) -> None:
        self.goal = goal
        self.kind = {"page": EventKind.PAGEVIEW, "event": EventKind.CUSTOM, "conversion": EventKind.CONVERSION}[
            goal.kind
        ]
        self._pattern = Wildcard(goal.page) if goal.kind == "page" else None
        self._paths: dict[str, bool] = {}

    def __call__(self, event: Event) -> bool:
        if event.kind is not self.kind:
            return False
        goal = self.goal
        if self._pattern is not None:
            found = self._paths.get(event.path)
            if found is None:
                if len(self._paths) > 50_000:
                    self._paths.clear()
                found = self._paths[event.path] = self._pattern.fullmatch(event.path)
            return found
        if event.name != goal.event:
            return False
        return not goal.prop_key or event.props.get(goal.prop_key) == goal.prop_value


class Goals:
    """The goals of every site: definitions, ingest-time counting, back-fills."""

    def __init__(
        self,
        *,
        store: Store,
        records: Records,
        strings: StringTable,
        counters: Counters,
        sketches: Sketches,
        coordinator: WriteCoordinator,
        sites: SiteRegistry,
        columns: ColumnStore,
    ) -> None:
        self._store = store
        self._records = records
        self._strings = strings
        self._counters = counters
        self._sketches = sketches
        self._coordinator = coordinator
        self._sites = sites
        self._columns = columns
        self._lock = threading.Lock()
        self._goals: dict[int, Goal] = {}
        self._matchers: dict[int, list[_Matcher]] = {}
        self._tasks = BackgroundTasks("goal-backfill")
        decoder = msgspec.msgpack.Decoder(Goal)
        for _, raw in self._records.scan(_RECORD):
            goal = decoder.decode(raw)
            self._goals[goal.id] = goal
        self._rebuild_matchers()
        self._pending_backfills = [goal for goal in self._goals.values() if not goal.backfilled]

    def start_pending(self) -> None:
        """Start the back-fills a restart interrupted (called lazily: the appliance must be open)."""
        pending, self._pending_backfills = self._pending_backfills, []
        for goal in pending:
            self._start_backfill(goal)

    def _rebuild_matchers(self) -> None:
        matchers: dict[int, list[_Matcher]] = defaultdict(list)
        for goal in self._goals.values():
            matchers[goal.site_id].append(_Matcher(goal))
        self._matchers = dict(matchers)

    def reload(self) -> None:
        """Read the definitions again (a standby copied its primary's records). A goal new to
        this process, or with a new counter id, is activated here as if created now: its
        back-fill counts this data dir's events before the current sequence, ingest the rest."""
        decoder = msgspec.msgpack.Decoder(Goal)
        sequences = self._store.db(b"sequences")
        started = []
        with self._coordinator.mutex:
            self._coordinator.flush()
            with self._store.read() as txn:
                raw = txn.get(b"event_sequence", db=sequences)
                stored = {goal.id: goal for goal in (decoder.decode(v) for _, v in self._records.scan(_RECORD, txn))}
            for goal in stored.values():
                known = self._goals.get(goal.id)
                if known is None or known.counter_id != goal.counter_id:
                    goal.backfill_before, goal.backfilled = unpack_u64(raw) if raw else 1, False
                    started.append(goal)
                else:
                    stored[goal.id] = known  # this process's own back-fill state
            self._goals = stored
            self._rebuild_matchers()
        for goal in started:
            self._start_backfill(goal)

    def forget_site(self, site_id: int) -> None:
        """Drop a deleted site's goals from memory (its records go with the site's data)."""
        self._goals = {goal_id: goal for goal_id, goal in self._goals.items() if goal.site_id != site_id}
        self._rebuild_matchers()

    # -- definitions ----------------------------------------------------------------------
    def list(self, site_id: int) -> list[Goal]:
        self.start_pending()
        return sorted((g for g in self._goals.values() if g.site_id == site_id), key=lambda g: g.id)

    def get(self, site_id: int, goal_id: int) -> Goal:
        goal = self._goals.get(goal_id)
        if goal is None or goal.site_id != site_id:
            raise DefinitionError("goal_id", f"no goal {goal_id} on this site", 404)
        return goal

    def by_name(self, site_id: int, name: str) -> Goal | None:
        return next((g for g in self.list(site_id) if g.name == name), None)

    def create(self, site_id: int, data: GoalInput, author: str = "") -> Goal:
        data = checked(data)
        existing = self.list(site_id)
        if len(existing) >= MAX_GOALS_PER_SITE:
            raise DefinitionError("goals", f"at most {MAX_GOALS_PER_SITE} goals per site")
        if any(g.name == data.name for g in existing):
            raise DefinitionError("name", f"a goal named {data.name!r} exists")
        return self._activate(None, site_id, data, author)

    def change(self, site_id: int, goal_id: int, data: GoalInput) -> Goal:
        old = self.get(site_id, goal_id)
        data = checked(data)
        if any(g.name == data.name and g.id != goal_id for g in self.list(site_id)):
            raise DefinitionError("name", f"a goal named {data.name!r} exists")
        same = (old.name, old.kind, old.page, old.event, old.prop_key, old.prop_value) == (
            data.name, data.kind, data.page, data.event, data.prop_key, data.prop_value
        )
        if same:
            return old
        if (old.kind, old.page, old.event, old.prop_key, old.prop_value) == (
            data.kind, data.page, data.event, data.prop_key, data.prop_value
        ):  # a rename keeps the counters (and, read under the mutex, the back-fill state)
            with self._coordinator.mutex:
                return self._save(msgspec.structs.replace(self.get(site_id, goal_id), name=data.name))
        return self._activate(old, site_id, data, old.created_by)

    def delete(self, site_id: int, goal_id: int) -> Goal:
        goal = self.get(site_id, goal_id)

        def remove(txn):
            self._records.delete(txn, _RECORD, _identifier(goal))
            self._goals.pop(goal.id, None)
            self._rebuild_matchers()

        with self._coordinator.mutex:  # not between a back-fill's commit and its publication
            self._store.write(remove)
        self._tasks.forget(goal.id)
        return goal

    def _save(self, goal: Goal) -> Goal:
        def write(txn):
            self._records.put(txn, _RECORD, _identifier(goal), msgspec.msgpack.encode(goal))
            self._goals[goal.id] = goal
            self._rebuild_matchers()

        self._store.write(write)
        return goal

    def _activate(self, old: Goal | None, site_id: int, data: GoalInput, author: str) -> Goal:
        """Store the definition and start counting it at ingest, in one write transaction."""
        made: list[Goal] = []
        sequences = self._store.db(b"sequences")

        def write(txn):
            made.clear()
            raw = txn.get(b"event_sequence", db=sequences)
            goal = Goal(
                id=old.id if old is not None else self._records.next_id(txn, "goal"),
                site_id=site_id,
                counter_id=self._records.next_id(txn, "goal_counter"),
                backfill_before=unpack_u64(raw) if raw else 1,
                created_at=old.created_at if old is not None else time.time(),
                created_by=author,
                **msgspec.structs.asdict(data),
            )
            self._records.put(txn, _RECORD, _identifier(goal), msgspec.msgpack.encode(goal))
            # Under the store's write lock: the next batch is counted by ingest, not back-filled.
            self._goals[goal.id] = goal
            self._rebuild_matchers()
            made.append(goal)

        try:
            # Events committed but not yet aggregated must be aggregated *before* the goal is
            # active (they are < S: the back-fill counts them), and no commit may fall between
            # reading S and activating.
            with self._coordinator.mutex:
                self._coordinator.flush()
                self._store.write(write)
        except BaseException:
            if made and old is not None:
                self._goals[old.id] = old
            elif made:
                self._goals.pop(made[0].id, None)
            self._rebuild_matchers()
            raise
        goal = made[0]
        self._start_backfill(goal)
        return goal

    # -- ingest ---------------------------------------------------------------------------
    def count(self, events: list[Event], timezones: dict[int, str], writes, intern) -> None:
        """Add goal completions of a batch to its counter deltas and sketch members."""
        matchers = self._matchers
        if not matchers:
            return
        counts = writes.counter_deltas
        members = writes.sketch_members
        for event in events:
            site_matchers = matchers.get(event.site_id)
            if not site_matchers:
                continue
            day = None
            for matcher in site_matchers:
                if not matcher(event):
                    continue
                if day is None:
                    day = day_bucket(event.timestamp, timezones.get(event.site_id, "UTC"))
                counter = matcher.goal.counter_id
                counts[(event.site_id, DAY, GOAL_COMPLETIONS, day, counter)] += 1
                members[(event.site_id, DAY, GOAL_VISITORS, day, counter)].add(event.visitor_id)
                if event.revenue:
                    currency = intern(f"{counter}{SEPARATOR}{event.currency}")
                    counts[(event.site_id, DAY, GOAL_REVENUE, day, currency)] += event.revenue
                    counts[(event.site_id, DAY, GOAL_REVENUE_EVENTS, day, currency)] += 1

    # -- the filtered path ----------------------------------------------------------------
    def mask(self, frame, goal: Goal, tests: dict | None = None) -> np.ndarray:
        """Rows of ``frame`` that complete ``goal``; ``tests`` (a walk's, kept between its days)
        keeps the goal's text tests, which remember their answer per string id."""
        tests = {} if tests is None else tests

        def test(field: str, operator: str, value: str) -> IdPredicate:
            if (goal.id, field) not in tests:
                tests[goal.id, field] = IdPredicate(text_predicate(operator, (value,)), self._strings.text)
            return tests[goal.id, field]

        kind = {"page": EventKind.PAGEVIEW, "event": EventKind.CUSTOM, "conversion": EventKind.CONVERSION}[goal.kind]
        rows = frame.column("kind") == kind
        if goal.kind == "page":
            return rows & frame.mask("path", test("path", "matches", goal.page))
        rows &= frame.mask("name", test("name", "is", goal.event))
        if goal.prop_key:
            key_id = self._strings.lookup(goal.prop_key)
            if key_id is None:
                return np.zeros(frame.size, bool)
            rows &= frame.prop_mask([key_id], test("prop", "is", goal.prop_value))
        return rows

    # -- back-fill ------------------------------------------------------------------------
    def _start_backfill(self, goal: Goal) -> None:
        self._tasks.start(goal.id, lambda progress: self._run_backfill(goal, progress))

    def wait(self, timeout: float = 60) -> None:
        """Wait for running back-fills (tests, the CLI)."""
        self._tasks.wait(timeout)

    def _run_backfill(self, goal: Goal, progress: dict[str, object]) -> None:
        site = self._sites.by_id(goal.site_id)
        if site is None:
            return

        def current() -> bool:
            found = self._goals.get(goal.id)
            return found is not None and found.counter_id == goal.counter_id

        history = count_history(goal, site, self._columns, self._strings, self.mask, current, progress)
        if history is None:
            progress["status"] = "superseded"
            return
        self._write_backfill(goal, *history)
        progress["status"] = "complete"

    def _write_backfill(self, goal, completions, visitors, revenue) -> None:
        strings = self._strings

        def write(txn):
            strings.rollback()
            current = self._goals.get(goal.id)
            if current is None or current.counter_id != goal.counter_id:
                return False  # deleted or changed meanwhile: its counters are never read
            deltas = {pack_bucket_key(goal.site_id, DAY, GOAL_COMPLETIONS, day, goal.counter_id): n for day, n in completions.items()}
            for (day, currency), (amount, count) in revenue.items():
                currency_id = strings.intern(txn, f"{goal.counter_id}{SEPARATOR}{currency}")
                deltas[pack_bucket_key(goal.site_id, DAY, GOAL_REVENUE, day, currency_id)] = amount
                deltas[pack_bucket_key(goal.site_id, DAY, GOAL_REVENUE_EVENTS, day, currency_id)] = count
            self._counters.apply(txn, deltas)
            self._sketches.add(
                txn,
                {
                    pack_bucket_key(goal.site_id, DAY, GOAL_VISITORS, day, goal.counter_id): (DIMENSION_PRECISION, list(members))
                    for day, members in visitors.items()
                },
            )
            done = msgspec.structs.replace(current, backfilled=True)
            self._records.put(txn, _RECORD, _identifier(done), msgspec.msgpack.encode(done))
            return True

        # Under the coordinator's mutex: no ingest commit or aggregation shares the string
        # table's and the sketch cache's bookkeeping meanwhile, and no rename or delete falls
        # between the commit and the publication below.
        with self._coordinator.mutex:
            try:
                written = self._store.write(write)
            except BaseException:
                strings.rollback()
                self._sketches.forget()
                raise
            strings.commit()
            self._sketches.committed()
            current = self._goals.get(goal.id)
            if written and current is not None and current.counter_id == goal.counter_id:
                # Published only once committed: a reader that sees the back-fill complete
                # reads counters that include it.
                self._goals[goal.id] = msgspec.structs.replace(current, backfilled=True)
                self._rebuild_matchers()

    def status(self, goal: Goal) -> dict[str, object]:
        if goal.backfilled:
            return {"status": "complete"}
        return self._tasks.status(goal.id, {"status": "queued"})

def _identifier(goal: Goal) -> str:
    return f"{goal.site_id:010d}/{goal.id:010d}"
