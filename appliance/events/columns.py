"""Column blocks: the event log re-laid per site and UTC day as numpy columns, and the
source of truth for closed days once compacted.

The event log (``storage.eventlog``) is the write-optimised tail: ingest appends MessagePack
rows and never touches a block. A *block* holds one site's events of one UTC day as columns:
``ts`` (milliseconds), ``seq`` (the log sequence), ``kind``, ``user``, ``revenue``,
``engaged``, ``scroll``; the client session hash and each interned string field of
:data:`appliance.ingest.aggregation.STRING_FIELDS` as a per-block dictionary plus small codes
(``uint8``/``uint16``/``uint32``), so a filter is evaluated once per distinct value and becomes
a mask with one gather; event properties as three parallel arrays (row, key id, value id);
the day's distinct visitor hashes, sorted (``v.dict``); and the day's *visits* (rebuilt by the
glossary's rule, see :mod:`appliance.events.sessions`): per row its visit (``s.row``, compactly
coded), per visit its visitor (a code into ``v.dict``), start, duration, first row, page
views, whether it was interactive, entry and exit page. A row's visitor is its visit's
(engagement pings, which belong to no visit, keep theirs in ``v.ping``).

Compaction runs in the background (:func:`appliance.runtime.jobs.compact_closed_days`), never on the
query path: a closed day's rows (the day ended more than :data:`CLOSE_GRACE_SECONDS` ago) are
encoded, compressed (:mod:`storage.columns`), decoded again and compared, stored as the day's
new block generation, and deleted from the log in the same transaction. From then on a day's
events are its block's rows plus whatever log rows arrived for it later (late events), which
the next compaction folds in. Rows still waiting for aggregation (``pending``) are never
compacted. :meth:`ColumnStore.events` yields a site's events over a time range from blocks and
log alike; everything that needs stored events (exports, goal and segment back-fills, the
retention purge, deleting a site, the brute-force tests) goes through it or through frames.

Reading: a stored block loads each column on first use, so a query reads the few columns it
needs. Whether a cached block is still current is decided in a *settled snapshot* (under the
appliance's write mutex pending events are aggregated and the read transaction opened, so no
commit falls between): the day's event count (the sum of its hourly ``EVENTS_TOTAL``
counters) and the stored generation must both be what the block was built against. Days
without a block (today, and closed days not yet compacted) are read from the log into an
in-memory block that is extended incrementally with the rows appended after its last key.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import msgspec
import numpy as np

from appliance import dimensions as dims
from appliance.budget import check_budget
from appliance.events.codec import STRING_FIELDS
from appliance.events.sessions import LazyVisits, local_visits, with_derived
from appliance.models import Event, EventKind
from storage.columns import ColumnBlocks, decode_array, encode_array
from storage.keys import HOUR, pack_event_key, unpack_event_key

FORMAT_VERSION = 3  # 3: visits near midnight stored (s.late, s.early)
DAY_MS = 86_400_000
CLOSE_GRACE_SECONDS = 15 * 60  # a day is compacted this long after it ends (late batches)
CACHE_BYTES = 3 << 30  # decoded columns kept in memory (least recently used blocks dropped first)
RETIRED_GRACE_MS = 15 * 60_000  # an old block generation stays readable this long after a rewrite

SCALARS: dict[str, np.dtype] = {
    "seq": np.dtype(np.uint32),
    "ts": np.dtype(np.int64),
    "visitor": np.dtype(np.uint64),
    "kind": np.dtype(np.uint8),
    "user": np.dtype(np.uint8),
    "session": np.dtype(np.uint64),
    "revenue": np.dtype(np.int64),
    "engaged": np.dtype(np.int32),
    "scroll": np.dtype(np.int16),
}
STORED_SCALARS = ("seq", "ts", "kind", "user", "revenue", "engaged", "scroll")
DELTA_COLUMNS = frozenset({"seq", "ts", "p.row", "s.start", "s.first_row"})
PROPS = ("p.row", "p.key", "p.value")
VISIT_COLUMNS = (
    "s.visitor", "s.start", "s.duration", "s.first_row", "s.pageviews", "s.interactive", "s.entry", "s.exit", "s.late", "s.early",
)
FIELD_INDEX = {name: index for index, name in enumerate(STRING_FIELDS)}
ENGAGEMENT = int(EventKind.ENGAGEMENT)
_decoder = msgspec.msgpack.Decoder()


def distinct_values(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)``, by sorting: numpy 2.4's hash-based ``unique`` (used when no
    inverse is asked for) is tens of times slower on millions of integers."""
    if len(values) < 2:
        return np.array(values, copy=True)
    ordered = np.sort(values)
    keep = np.empty(len(ordered), bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


class StaleBlock(RuntimeError):
    """A block's generation was replaced and removed while a reader still used it."""


def _codes_dtype(size: int) -> np.dtype:
    if size <= 1 << 8:
        return np.dtype(np.uint8)
    if size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def _narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in the narrowest unsigned dtype that holds them."""
    top = int(values.max()) if len(values) else 0
    return values.astype(_codes_dtype(top + 1))


def encode_visit_rows(visit_of: np.ndarray) -> np.ndarray:
    """Per row, its visit number (visits numbered by their first row; -1 for pings) as small
    codes: 0 a ping, 1 the first row of the next visit, k > 1 a row of the visit k - 2 below
    the highest visit begun so far. Concurrent visits are few, so the codes stay small."""
    count = len(visit_of)
    if not count:
        return np.zeros(0, np.uint8)
    visits = visit_of.astype(np.int64)
    ping = visits < 0
    highest = np.maximum.accumulate(np.where(ping, -1, visits))
    before = np.empty(count, np.int64)
    before[0] = -1
    before[1:] = highest[:-1]
    codes = before + 2 - visits
    codes[ping] = 0
    return _narrow(codes)


def decode_visit_rows(codes: np.ndarray) -> np.ndarray:
    new = codes == 1
    visits = np.cumsum(new, dtype=np.int32)
    visits += 1
    visits -= new
    visits -= codes  # before + 2 - code, where before = visits begun before the row - 1
    visits[codes == 0] = -1
    return visits


class Block:
    """One site and UTC day of events as columns (rows in log-key order: time order).

    In memory (built from log rows) every column is held as is: ``visitor`` and ``session``
    as 64-bit hashes, string fields as id arrays ``i.<field>``. A stored block holds what
    :func:`stored_columns` wrote and loads each column on first use through ``loader``.
    """

    def __init__(
        self,
        site: int,
        day: int,
        count: int,
        columns: dict[str, np.ndarray],
        *,
        generation: int = 0,
        loader: Callable[[str], np.ndarray] | None = None,
        timeout_ms: int = 0,
        last_key: bytes = b"",
        built_against: int = 0,
    ) -> None:
        self.site = site
        self.day = day
        self.count = count
        self.columns = columns
        self.generation = generation  # 0: built from the log, held in memory
        self.stored = loader is not None
        self._loader = loader
        self.timeout_ms = timeout_ms  # the visit timeout the stored visits were cut with
        self.format = FORMAT_VERSION  # a stored block's format (older ones are re-encoded by the job)
        self.last_key = last_key  # the last log key read (in-memory tail blocks grow after it)
        self.built_against = built_against  # the day's event count when built
        self.identity: tuple = (generation, built_against)
        self.derived: dict = {}  # per-block results cached by their users (visits, codes)
        self.cached_size = 0
        self._lock = threading.Lock()

    # -- raw columns ----------------------------------------------------------------------
    def column(self, name: str) -> np.ndarray:
        found = self.columns.get(name)
        if found is None:
            if self._loader is None:
                raise KeyError(name)
            with self._lock:
                found = self.columns.get(name)
                if found is None:
                    found = self.columns[name] = self._loader(name)
        return found

    def nbytes(self) -> int:
        total = sum(a.nbytes for a in list(self.columns.values()))
        for value in list(self.derived.values()):
            if isinstance(value, np.ndarray):
                total += value.nbytes
            elif isinstance(value, dict):
                total += sum(a.nbytes for a in value.values() if isinstance(a, np.ndarray))
        return total

    # -- logical columns ------------------------------------------------------------------
    def scalar(self, name: str) -> np.ndarray:
        """``ts``, ``seq``, ``kind``, ``user``, ``revenue``, ``engaged``, ``scroll``,
        ``session`` (hash) or ``visitor`` (hash), one per row."""
        if not self.stored:
            return self.columns[name]
        if name == "visitor":
            return self.visitor_dictionary()[self.visitor_codes()]
        if name == "session":
            return self._cached("session", lambda: self.column("d.session")[self.column("c.session")])
        return self.column(name)

    def _cached(self, key, make):
        found = self.derived.get(key)
        if found is None:
            found = self.derived[key] = make()
        return found

    def dictionary(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(distinct ids, codes)`` of a string field: ``ids == dictionary[codes]``."""
        if self.stored:
            return self.column("d." + name), self.column("c." + name)

        def make():
            dictionary, codes = np.unique(self.columns["i." + name], return_inverse=True)
            return dictionary.astype(np.uint32), codes.astype(_codes_dtype(len(dictionary)))

        return self._cached(("dictionary", name), make)

    def ids(self, name: str) -> np.ndarray:
        """The interned ids of a string field, one per row."""
        if not self.stored:
            return self.columns["i." + name]

        def make():
            dictionary, codes = self.dictionary(name)
            return dictionary[codes]

        return self._cached(("ids", name), make)

    def visitor_dictionary(self) -> np.ndarray:
        """The block's distinct visitor hashes, sorted."""
        if self.stored:
            return self.column("v.dict")
        return self._visitor_coding()[0]

    def visitor_codes(self) -> np.ndarray:
        """Per row, its visitor as an index into :meth:`visitor_dictionary`."""
        if not self.stored:
            return self._visitor_coding()[1]

        def make():
            visit_of = self.column_visit_rows()
            visitor = self.column("s.visitor").astype(np.int64)
            codes = np.empty(self.count, np.int64)
            inside = visit_of >= 0
            codes[inside] = visitor[visit_of[inside]]
            codes[~inside] = self.column("v.ping")
            return codes

        return self._cached("visitor_codes", make)

    def _visitor_coding(self):
        def make():
            dictionary, codes = np.unique(self.columns["visitor"], return_inverse=True)
            return dictionary, codes.astype(np.int64)

        return self._cached("visitor_coding", make)

    def column_visit_rows(self) -> np.ndarray:
        return self._cached("visit_rows", lambda: decode_visit_rows(self.column("s.row")))

    def local_visits(self, timeout_ms: int) -> dict[str, np.ndarray]:
        """The day's visits (see :func:`appliance.events.sessions.local_visits`), visitors as codes;
        a stored block decodes each array on first use."""
        if self.stored and self.timeout_ms == timeout_ms and self.format >= 3:

            def make():
                column = self.column
                visits = LazyVisits(
                    {
                        "visit_of": self.column_visit_rows,
                        "visitor": lambda: column("s.visitor"),
                        "start": lambda: column("s.start"),
                        "duration": lambda: column("s.duration"),
                        "end": lambda: visits["start"] + visits["duration"],
                        "first_row": lambda: column("s.first_row"),
                        "pageviews": lambda: column("s.pageviews"),
                        "interactive": lambda: column("s.interactive").astype(bool),
                        "bounce": lambda: (visits["pageviews"] == 1) & (column("s.interactive") == 0),
                        "entry_page": lambda: _page_ids(column("d.path"), column("s.entry")),
                        "exit_page": lambda: _page_ids(column("d.path"), column("s.exit")),
                        "late": lambda: column("s.late"),
                        "early": lambda: column("s.early"),
                    }
                )
                return visits

            return self._cached(("visits", timeout_ms), make)
        return self._cached(
            ("visits", timeout_ms),
            lambda: with_derived(
                local_visits(
                    self.scalar("kind"),
                    self.visitor_codes(),
                    self.scalar("ts"),
                    self.scalar("session"),
                    self.ids("path"),
                    timeout_ms,
                ),
                self.day,
                timeout_ms,
            ),
        )

    def props(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.column("p.row"), self.column("p.key"), self.column("p.value")

    def plain(self) -> dict[str, np.ndarray]:
        """Every column in the in-memory form (for merging with log rows, trimming)."""
        out = {name: self.scalar(name) for name in SCALARS}
        for name in STRING_FIELDS:
            out["i." + name] = self.ids(name)
        for name, array in zip(PROPS, self.props(), strict=True):
            out[name] = array
        return out

    def events(self, text: Callable[[int], str], lo: int = 0, hi: int | None = None) -> Iterator[tuple[bytes, Event]]:
        """Rows ``lo:hi`` as ``(log key, Event)``, as :func:`appliance.ingest.aggregation.decode_event` would."""
        hi = self.count if hi is None else hi
        if hi <= lo:
            return
        ts = self.scalar("ts")[lo:hi].tolist()
        seq = self.scalar("seq")[lo:hi].tolist()
        kind = self.scalar("kind")[lo:hi].tolist()
        visitor = self.scalar("visitor")[lo:hi].tolist()
        user = self.scalar("user")[lo:hi].tolist()
        session = self.scalar("session")[lo:hi].tolist()
        revenue = self.scalar("revenue")[lo:hi].tolist()
        engaged = self.scalar("engaged")[lo:hi].tolist()
        scroll = self.scalar("scroll")[lo:hi].tolist()
        fields = [self.ids(name)[lo:hi].tolist() for name in STRING_FIELDS]
        rows, keys, values = self.props()
        chosen = (rows >= lo) & (rows < hi)
        props: dict[int, dict[str, str]] = {}
        for row, key, value in zip(rows[chosen].tolist(), keys[chosen].tolist(), values[chosen].tolist(), strict=True):
            props.setdefault(row - lo, {})[text(key)] = text(value)
        for index in range(hi - lo):
            yield (
                pack_event_key(self.site, ts[index], seq[index]),
                Event(
                    kind=EventKind(kind[index]),
                    site_id=self.site,
                    timestamp=ts[index] / 1000,
                    visitor_id=visitor[index],
                    user_hashed=bool(user[index]),
                    session_hint=f"{session[index]:016x}" if session[index] else "",
                    props=props.get(index, {}),
                    revenue=revenue[index],
                    engaged_ms=engaged[index],
                    scroll_depth=scroll[index],
                    **{name: text(ids[index]) for name, ids in zip(STRING_FIELDS, fields, strict=True)},
                ),
            )


def _page_ids(path_dictionary: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Entry/exit pages are stored as path codes + 1 (0: the visit had no page view)."""
    table = np.concatenate([np.zeros(1, np.uint32), path_dictionary.astype(np.uint32)])
    return table[codes.astype(np.int64)]


def _empty_columns() -> dict[str, np.ndarray]:
    columns = {name: np.zeros(0, dtype) for name, dtype in SCALARS.items()}
    for name in STRING_FIELDS:
        columns["i." + name] = np.zeros(0, np.uint32)
    for name in PROPS:
        columns[name] = np.zeros(0, np.uint32)
    return columns


def rows_to_columns(entries: list[tuple[bytes, bytes]]) -> dict[str, np.ndarray]:
    """Decode log rows into in-memory columns (string fields as id arrays ``i.<field>``)."""
    count = len(entries)
    if not count:
        return _empty_columns()
    columns: dict[str, np.ndarray] = {}
    keys = [unpack_event_key(key) for key, _ in entries]
    rows = [_decoder.decode(value) for _, value in entries]
    columns["seq"] = np.fromiter((k[2] for k in keys), np.uint32, count)
    columns["ts"] = np.fromiter((k[1] for k in keys), np.int64, count)
    kind, visitor, user, session, ids, props, revenue, engaged, scroll = zip(*rows, strict=True)
    columns["kind"] = np.array(kind, np.uint8)
    columns["visitor"] = np.array(visitor, np.uint64)
    columns["user"] = np.array(user, np.uint8)
    columns["session"] = np.array(session, np.uint64)
    columns["revenue"] = np.array(revenue, np.int64)
    columns["engaged"] = np.array(engaged, np.int32)
    columns["scroll"] = np.array(scroll, np.int16)
    width = len(STRING_FIELDS)
    try:
        matrix = np.array(ids, np.uint32)
        if matrix.ndim != 2 or matrix.shape[1] != width:
            raise ValueError
    except ValueError:  # rows written before a field was added: pad with the empty string
        matrix = np.zeros((count, width), np.uint32)
        for index, row in enumerate(ids):
            matrix[index, : min(width, len(row))] = row[:width]
    for index, name in enumerate(STRING_FIELDS):
        columns["i." + name] = np.ascontiguousarray(matrix[:, index])
    lengths = np.fromiter((len(p) // 2 for p in props), np.int64, count)
    flat = np.fromiter((x for p in props for x in p), np.uint32, int(lengths.sum()) * 2)
    columns["p.row"] = np.repeat(np.arange(count, dtype=np.uint32), lengths)
    columns["p.key"] = flat[0::2].copy()
    columns["p.value"] = flat[1::2].copy()
    return columns


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """In-memory columns of several row sets, one after the other."""
    out = {}
    offset = 0
    offsets = []
    for part in parts:
        offsets.append(offset)
        offset += len(part["ts"])
    for name in (*SCALARS, *("i." + f for f in STRING_FIELDS), *PROPS):
        pieces = [
            part[name].astype(np.uint32) + np.uint32(start) if name == "p.row" else part[name]
            for part, start in zip(parts, offsets, strict=True)
        ]
        out[name] = np.concatenate(pieces) if pieces else _empty_columns()[name]
    return out


def take(columns: dict[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The in-memory columns of ``rows`` (indices), in that order."""
    out = {name: columns[name][rows] for name in (*SCALARS, *("i." + f for f in STRING_FIELDS))}
    new_row = np.full(len(columns["ts"]), -1, np.int64)
    new_row[rows] = np.arange(len(rows))
    mapped = new_row[columns["p.row"].astype(np.int64)]
    keep = mapped >= 0
    order = np.argsort(mapped[keep], kind="stable")
    out["p.row"] = mapped[keep][order].astype(np.uint32)
    out["p.key"] = columns["p.key"][keep][order]
    out["p.value"] = columns["p.value"][keep][order]
    return out


def in_key_order(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows sorted as the log's keys are: by timestamp, then sequence."""
    order = np.lexsort((columns["seq"], columns["ts"]))
    if len(order) and (np.diff(order) == 1).all():
        return columns
    return take(columns, order)


def stored_columns(columns: dict[str, np.ndarray], day: int, timeout_ms: int) -> dict[str, np.ndarray]:
    """What a block stores for in-memory ``columns`` (see the module docstring)."""
    out = {name: columns[name] for name in STORED_SCALARS}
    for name in STRING_FIELDS:
        dictionary, codes = np.unique(columns["i." + name], return_inverse=True)
        out["d." + name] = dictionary.astype(np.uint32)
        out["c." + name] = codes.astype(_codes_dtype(len(dictionary)))
    sessions, session_codes = np.unique(columns["session"], return_inverse=True)
    out["d.session"] = sessions.astype(np.uint64)
    out["c.session"] = session_codes.astype(_codes_dtype(len(sessions)))
    for name in PROPS:
        out[name] = columns[name]
    visitors, visitor_codes = np.unique(columns["visitor"], return_inverse=True)
    out["v.dict"] = visitors.astype(np.uint64)
    visits = with_derived(
        local_visits(
            columns["kind"], visitor_codes.astype(np.int64), columns["ts"], columns["session"], columns["i.path"], timeout_ms
        ),
        day,
        timeout_ms,
    )
    out["s.row"] = encode_visit_rows(visits["visit_of"])
    out["v.ping"] = _narrow(visitor_codes[visits["visit_of"] < 0])
    out["s.visitor"] = _narrow(visits["visitor"])
    out["s.start"] = visits["start"]
    out["s.duration"] = _narrow(visits["end"] - visits["start"])
    out["s.first_row"] = visits["first_row"]
    out["s.pageviews"] = _narrow(visits["pageviews"])
    out["s.interactive"] = visits["interactive"].astype(np.uint8)
    out["s.late"] = visits["late"].astype(np.int32)
    out["s.early"] = visits["early"].astype(np.int32)
    path_dictionary = out["d.path"]
    for name, key in (("s.entry", "entry_page"), ("s.exit", "exit_page")):
        pages = visits[key]
        codes = np.searchsorted(path_dictionary, pages) + 1
        out[name] = _narrow(np.where(pages == 0, 0, codes))
    return out


def _check_round_trip(block: Block, columns: dict[str, np.ndarray], timeout_ms: int) -> None:
    """A block decoded from its stored bytes must give back every row and visit."""
    plain = block.plain()
    for name in (*SCALARS, *("i." + f for f in STRING_FIELDS), *PROPS):
        if not np.array_equal(plain[name].astype(np.int64), columns[name].astype(np.int64)):
            if name in ("visitor", "session") and np.array_equal(plain[name], columns[name]):
                continue
            raise AssertionError(f"column {name} of site {block.site} day {block.day} does not round-trip")
    stored = block.local_visits(timeout_ms)
    fresh = with_derived(
        local_visits(
            columns["kind"],
            block.visitor_codes(),
            columns["ts"],
            columns["session"],
            columns["i.path"],
            timeout_ms,
        ),
        block.day,
        timeout_ms,
    )
    names = ("visit_of", "visitor", "start", "end", "first_row", "pageviews", "interactive", "entry_page", "exit_page")
    for name in (*names, "duration", "bounce", "late", "early"):
        array = fresh[name]
        if not np.array_equal(np.asarray(stored[name]).astype(np.int64), np.asarray(array).astype(np.int64)):
            raise AssertionError(f"visits ({name}) of site {block.site} day {block.day} do not round-trip")


class ColumnStore:
    """Builds, stores, caches and serves column blocks (see the module docstring)."""

    def __init__(
        self,
        appliance,
        *,
        cache_bytes: int = CACHE_BYTES,
        clock: Callable[[], float] = time.time,
        timeout_ms: int | None = None,
    ) -> None:
        self._appliance = appliance
        self._store = appliance.store
        self._eventlog = appliance.eventlog
        self._counters = appliance.counters
        self.blocks = ColumnBlocks(appliance.store)
        self.timeout_ms = (
            timeout_ms if timeout_ms is not None else appliance.settings.sites.visit_timeout_minutes * 60_000
        )
        self._cache: OrderedDict[tuple[int, int], Block] = OrderedDict()
        self._spaces: OrderedDict[tuple, VisitorSpace] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._day_locks = [threading.Lock() for _ in range(64)]  # striped by (site, day)
        self._compaction_lock = threading.Lock()
        self._clock = clock
        self.compactions = 0  # blocks written (for tests and the bench)

    # -- freshness ------------------------------------------------------------------------
    @contextmanager
    def settled(self):
        """A read transaction in which every committed event is also aggregated."""
        reader = self._store.read()
        appliance = self._appliance
        mutex = getattr(appliance, "_write_mutex", None)
        if mutex is not None:
            with mutex:  # no commit and no aggregation can start while the snapshot opens
                appliance.flush_aggregates()
                txn = reader.__enter__()
        else:
            txn = reader.__enter__()
        try:
            yield txn
        finally:
            reader.__exit__(None, None, None)

    def day_count(self, txn, site: int, day: int) -> int:
        """Events of ``site`` counted with a timestamp in UTC day ``day``."""
        return sum(
            value for _, _, value in self._counters.scan(txn, site, HOUR, dims.EVENTS_TOTAL, day * 24, day * 24 + 23)
        )

    def days_with_events(self, site: int, first_day: int, last_day: int) -> list[int]:
        """UTC days of the range on which ``site`` has events (counters or a stored block)."""
        with self.settled() as txn:
            hours = self._counters.scan(txn, site, HOUR, dims.EVENTS_TOTAL, first_day * 24, last_day * 24 + 23)
            found = {hour // 24 for hour, _, value in hours if value}
            found.update(self.blocks.days(txn, site, first_day, last_day))
            return sorted(found)

    def is_closed(self, day: int) -> bool:
        return self._clock() * 1000 >= (day + 1) * DAY_MS + CLOSE_GRACE_SECONDS * 1000

    # -- blocks ---------------------------------------------------------------------------
    def block(self, site: int, day: int) -> Block:
        """The current block of ``(site, day)``: cached, stored (plus late log rows), or read
        from the log."""
        key = (site, day)
        with self._day_locks[hash(key) % len(self._day_locks)]:
            with self.settled() as txn:
                total = self.day_count(txn, site, day)
                pointer = self.blocks.pointer(txn, site, day)
                generation = pointer.generation if pointer is not None else 0
                with self._lock:
                    cached = self._cache.get(key)
                    if cached is not None:
                        self._cache.move_to_end(key)
                if cached is not None and cached.identity == (generation, total):
                    self._resize(cached)  # lazily loaded columns count against the cache
                    return cached
                if pointer is not None:
                    block = self._stored(txn, site, day, pointer)
                    tail = list(self._eventlog.scan(txn, site, day * DAY_MS, (day + 1) * DAY_MS))
                    if tail:
                        merged = in_key_order(concatenate([block.plain(), rows_to_columns(tail)]))
                        block = Block(site, day, len(merged["ts"]), merged, generation=generation)
                else:
                    block = self._from_log(txn, site, day, total, cached)
                block.identity = (generation, total)
                block.built_against = total
            self._remember(block)
            return block

    def _loader(self, site: int, day: int, generation: int) -> Callable[[str], np.ndarray]:
        def load(name: str) -> np.ndarray:
            with self._store.read() as txn:
                array = self.blocks.get(txn, site, day, generation, name)
            if array is None:
                raise StaleBlock(f"block generation {generation} of site {site} day {day} was replaced")
            return array

        return load

    def _stored(self, txn, site: int, day: int, pointer) -> Block:
        info = pointer.info
        block = Block(
            site,
            day,
            int(info.get("count", 0)),
            {},
            generation=pointer.generation,
            loader=self._loader(site, day, pointer.generation),
            timeout_ms=int(info.get("timeout_ms", 0)),
        )
        block.format = int(info.get("format", 0))
        return block

    def _from_log(self, txn, site: int, day: int, total: int, cached: Block | None) -> Block:
        start, end = day * DAY_MS, (day + 1) * DAY_MS
        if cached is not None and cached.generation == 0 and not cached.stored and cached.last_key:
            # Extend a tail block with what was appended after its last key, if that is all.
            _, last_ms, _ = unpack_event_key(cached.last_key)
            entries = [(k, v) for k, v in self._eventlog.scan(txn, site, last_ms, end) if k > cached.last_key]
            if cached.built_against + len(entries) == total:
                columns = concatenate([cached.columns, rows_to_columns(entries)])
                return Block(
                    site,
                    day,
                    cached.count + len(entries),
                    columns,
                    last_key=entries[-1][0] if entries else cached.last_key,
                    built_against=total,
                )
        entries = list(self._eventlog.scan(txn, site, start, end))
        return Block(
            site,
            day,
            len(entries),
            rows_to_columns(entries),
            last_key=entries[-1][0] if entries else pack_event_key(site, start, 0),
            built_against=total,
        )

    def _remember(self, block: Block) -> None:
        if not block.count:
            return  # an empty day costs one counter scan to find again
        key = (block.site, block.day)
        with self._lock:
            replaced = self._cache.pop(key, None)
            if replaced is not None:
                self._cached_bytes -= replaced.cached_size
            block.cached_size = block.nbytes() + (block.count * 8 if block.stored else 0)  # room for lazy columns
            self._cache[key] = block
            self._cached_bytes += block.cached_size
            while self._cached_bytes > self._cache_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.cached_size

    def _resize(self, block: Block) -> None:
        with self._lock:
            if self._cache.get((block.site, block.day)) is not block:
                return
            size = block.nbytes()
            if size > block.cached_size:
                self._cached_bytes += size - block.cached_size
                block.cached_size = size
            while self._cached_bytes > self._cache_bytes and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.cached_size

    def forget(self, site: int | None = None, day: int | None = None) -> None:
        with self._lock:
            self._spaces.clear()
            for key in [k for k in self._cache if (site is None or k[0] == site) and (day is None or k[1] == day)]:
                self._cached_bytes -= self._cache.pop(key).cached_size

    # -- compaction (background) ----------------------------------------------------------
    def compact_day(self, site: int, day: int) -> bool:
        """Fold the day's log rows into its block (a new generation) and delete them from the
        log, in one transaction, after checking the encoded block decodes to the same rows.
        Rows still pending aggregation stay in the log. Returns whether a block was written."""
        if not self.is_closed(day):
            return False
        with self._compaction_lock:
            pending_db = self._store.db(b"pending")
            with self.settled() as txn:
                pointer = self.blocks.pointer(txn, site, day)
                waiting = set()
                cursor = txn.cursor(db=pending_db)
                if cursor.set_range(pack_event_key(site, day * DAY_MS, 0)):
                    end = pack_event_key(site, (day + 1) * DAY_MS, 0)
                    for key in cursor.iternext(keys=True, values=False):
                        if key >= end:
                            break
                        waiting.add(key)
                tail = [
                    (key, value)
                    for key, value in self._eventlog.scan(txn, site, day * DAY_MS, (day + 1) * DAY_MS)
                    if key not in waiting
                ]
                if not tail and (pointer is None or not self._outdated(pointer)):
                    return False
                parts = [rows_to_columns(tail)]
                if pointer is not None:
                    old = self._stored(txn, site, day, pointer)
                    try:
                        parts.insert(0, old.plain())
                    except StaleBlock:
                        return False  # rewritten meanwhile: the next run sees the new one
                columns = in_key_order(concatenate(parts))
            arrays = stored_columns(columns, day, self.timeout_ms)
            encoded = {name: encode_array(array, delta=name in DELTA_COLUMNS) for name, array in arrays.items()}
            count = len(columns["ts"])
            check = Block(
                site, day, count, {}, loader=lambda name: decode_array(encoded[name]), timeout_ms=self.timeout_ms
            )
            _check_round_trip(check, columns, self.timeout_ms)
            info = {"format": FORMAT_VERSION, "count": count, "timeout_ms": self.timeout_ms}
            expected = pointer.generation if pointer is not None else None

            def write(txn):
                current = self.blocks.pointer(txn, site, day)
                if (current.generation if current is not None else None) != expected:
                    return False
                if any(self._eventlog.get(txn, key) is None for key, _ in tail):
                    return False  # purged meanwhile
                self.blocks.put(txn, site, day, encoded, info)
                events_db = self._store.db(b"events")
                for key, _ in tail:
                    txn.delete(key, db=events_db)
                return True

            written = self._store.write(write)
        if written:
            self.compactions += 1
        return written

    def _outdated(self, pointer) -> bool:
        info = pointer.info
        return info.get("format") != FORMAT_VERSION or info.get("timeout_ms") != self.timeout_ms

    def compact(self, site: int, first_day: int, last_day: int) -> int:
        """Compact every closed day of the range that has log rows, and re-encode blocks of
        an older format (or visit timeout); returns how many blocks were written."""
        with self.settled() as txn:
            days = set(self.log_days(txn, site, first_day, last_day))
            for day in self.blocks.days(txn, site, first_day, last_day):
                if self._outdated(self.blocks.pointer(txn, site, day)):
                    days.add(day)
        return sum(self.compact_day(site, day) for day in sorted(days) if self.is_closed(day))

    def log_days(self, txn, site: int, first_day: int, last_day: int) -> list[int]:
        """UTC days of the range with rows in the event log (one cursor seek per day found)."""
        found = []
        day = first_day
        while day <= last_day:
            key = next(iter(self._eventlog.scan(txn, site, day * DAY_MS, (last_day + 1) * DAY_MS)), None)
            if key is None:
                break
            day = unpack_event_key(key[0])[1] // DAY_MS
            found.append(day)
            day += 1
        return found

    def collect(self, site: int, now_ms: int | None = None) -> int:
        """Delete block generations retired more than :data:`RETIRED_GRACE_MS` ago."""
        now_ms = int(self._clock() * 1000) if now_ms is None else now_ms
        with self._store.read() as txn:
            days = self.blocks.days(txn, site)
        removed = 0
        for day in days:
            removed += self._store.write(lambda txn, day=day: self.blocks.collect(txn, site, day, now_ms - RETIRED_GRACE_MS))
        return removed

    def purge_before(self, site: int, cutoff_ms: int) -> int:
        """Retention: delete the site's block rows older than ``cutoff_ms`` (whole days' blocks,
        and the older rows of the day the cutoff falls in); returns how many rows went."""
        cutoff_day = cutoff_ms // DAY_MS
        removed = 0
        with self._compaction_lock:
            with self._store.read() as txn:
                days = [d for d in self.blocks.days(txn, site, 0, cutoff_day)]
                pointers = {d: self.blocks.pointer(txn, site, d) for d in days}
            for day in days:
                pointer = pointers[day]
                if day < cutoff_day:
                    self._store.write(lambda txn, day=day: self.blocks.delete(txn, site, day))
                    removed += int(pointer.info.get("count", 0))
                    continue
                old = self._stored(None, site, day, pointer)
                ts = old.scalar("ts")
                first = int(np.searchsorted(ts, cutoff_ms, "left"))
                if not first:
                    continue
                columns = take(old.plain(), np.arange(first, old.count))
                arrays = stored_columns(columns, day, self.timeout_ms)
                encoded = {name: encode_array(a, delta=name in DELTA_COLUMNS) for name, a in arrays.items()}
                info = {"format": FORMAT_VERSION, "count": old.count - first, "timeout_ms": self.timeout_ms}

                def write(txn, day=day, encoded=encoded, info=info, generation=pointer.generation):
                    current = self.blocks.pointer(txn, site, day)
                    if current is None or current.generation != generation:
                        return False
                    self.blocks.put(txn, site, day, encoded, info)
                    return True

                if self._store.write(write):
                    removed += first
        self.forget(site)
        return removed

    def delete_site(self, txn, site: int) -> None:
        self.blocks.delete_site(txn, site)
        self.forget(site)

    # -- events ---------------------------------------------------------------------------
    def events(self, site: int, start_ms: int, end_ms: int, text: Callable[[int], str]) -> Iterator[tuple[bytes, Event]]:
        """The site's events with ``start_ms <= ts < end_ms`` in log-key (time) order, from
        blocks and log rows alike, as ``(log key, Event)``."""
        if end_ms <= start_ms:
            return
        first_day, last_day = start_ms // DAY_MS, (end_ms - 1) // DAY_MS
        with self.settled() as txn:
            stored = set(self.blocks.days(txn, site, first_day, last_day))
            log_days = set(self.log_days(txn, site, first_day, last_day))
        for day in sorted(stored | log_days):
            block = self.block(site, day)
            ts = block.scalar("ts")
            lo = int(np.searchsorted(ts, start_ms, "left"))
            hi = int(np.searchsorted(ts, end_ms, "left"))
            yield from block.events(text, lo, hi)

    # -- frames ---------------------------------------------------------------------------
    def frame(self, site: int, start_ms: int, end_ms: int) -> Frame:
        """The site's events with ``start_ms <= ts < end_ms``, as a :class:`Frame`."""
        parts = []
        for day in self.days_with_events(site, start_ms // DAY_MS, (end_ms - 1) // DAY_MS):
            check_budget()
            block = self.block(site, day)
            if not block.count:
                continue
            lo, hi = 0, block.count
            if start_ms > day * DAY_MS or end_ms < (day + 1) * DAY_MS:
                ts = block.scalar("ts")
                lo = 0 if start_ms <= day * DAY_MS else int(np.searchsorted(ts, start_ms, "left"))
                hi = block.count if end_ms >= (day + 1) * DAY_MS else int(np.searchsorted(ts, end_ms, "left"))
            if hi > lo:
                parts.append((block, lo, hi))
        return Frame(parts, self.visitor_space)

    def visitor_space(self, blocks: list[Block]) -> VisitorSpace:
        """The :class:`VisitorSpace` of some blocks; the last few are kept (a dashboard asks
        many reports of one period)."""
        key = tuple((block.site, block.day, block.identity) for block in blocks)
        with self._lock:
            found = self._spaces.get(key)
            if found is not None:
                self._spaces.move_to_end(key)
                return found
        found = VisitorSpace(blocks)
        with self._lock:
            self._spaces[key] = found
            while len(self._spaces) > 8:
                self._spaces.popitem(last=False)
        return found


class VisitorSpace:
    """The distinct visitors of a frame's blocks, numbered: block ``b``'s local visitor code
    ``c`` is frame code ``canonical[offset[b] + c]``. Anonymous visitor ids change daily, so
    blocks rarely share a visitor; the few that do are found with one sort of the blocks'
    (already sorted) dictionaries and mapped to the first block's code."""

    def __init__(self, blocks: list[Block]) -> None:
        dictionaries = [block.visitor_dictionary() for block in blocks]
        sizes = [len(d) for d in dictionaries]
        self.offsets = np.cumsum([0, *sizes])[:-1].astype(np.int64)
        self.size = int(sum(sizes))
        self._dictionaries = dictionaries
        self._every: np.ndarray | None = None
        self.canonical: np.ndarray | None = None
        if len(dictionaries) > 1 and self.size:
            merged = np.sort(np.concatenate(dictionaries))
            repeated = distinct_values(merged[1:][merged[1:] == merged[:-1]])
            if len(repeated):
                canonical = np.arange(self.size, dtype=np.int64)
                first_code = np.full(len(repeated), -1, np.int64)
                for offset, dictionary in zip(self.offsets.tolist(), dictionaries, strict=True):
                    where = np.minimum(np.searchsorted(dictionary, repeated), max(len(dictionary) - 1, 0))
                    present = dictionary[where] == repeated if len(dictionary) else np.zeros(len(repeated), bool)
                    codes = offset + where[present]
                    unset = first_code[present] < 0
                    first_code[np.flatnonzero(present)[unset]] = codes[unset]
                    canonical[codes] = first_code[present]
                self.canonical = canonical

    def codes(self, index: int, local: np.ndarray) -> np.ndarray:
        """Frame codes of block ``index``'s local visitor codes."""
        codes = local.astype(np.int64) + self.offsets[index]
        return self.canonical[codes] if self.canonical is not None else codes

    def hashes(self, codes: np.ndarray) -> np.ndarray:
        """The visitor hashes of frame codes."""
        if not self.size:
            return np.zeros(len(codes), np.uint64)
        if self._every is None:
            self._every = np.concatenate(self._dictionaries)
        return self._every[codes]

    def count(self, codes: np.ndarray) -> int:
        """How many distinct visitors ``codes`` holds."""
        if not len(codes):
            return 0
        if len(codes) * 16 < self.size:
            ordered = np.sort(codes)
            return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1
        seen = np.zeros(self.size, bool)
        seen[codes] = True
        return int(np.count_nonzero(seen))

    def count_groups(self, groups: np.ndarray, codes: np.ndarray) -> dict[int, int]:
        """For each group id, how many distinct visitors it has; ``groups`` non-decreasing."""
        if not len(groups):
            return {}
        bounds = np.flatnonzero(np.diff(groups)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(groups)]])
        return {int(groups[s]): self.count(codes[s:e]) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)}


class Frame:
    """Events of a period: slices of day blocks, read column by column and concatenated."""

    def __init__(self, parts: list[tuple[Block, int, int]], spaces: Callable[[list[Block]], VisitorSpace] | None = None) -> None:
        self.parts = parts
        self.size = sum(hi - lo for _, lo, hi in parts)
        self._cache: dict[str, np.ndarray] = {}
        self._space: VisitorSpace | None = None
        self._spaces = spaces or VisitorSpace
        self.key = tuple((b.site, b.day, b.identity, lo, hi) for b, lo, hi in parts)

    def column(self, name: str) -> np.ndarray:
        """A scalar column (``ts``, ``visitor``, ``kind``...) or a string field's ids."""
        found = self._cache.get(name)
        if found is None:
            if name in SCALARS:
                pieces = [block.scalar(name)[lo:hi] for block, lo, hi in self.parts]
                dtype = SCALARS[name]
            else:
                pieces = [block.ids(name)[lo:hi] for block, lo, hi in self.parts]
                dtype = np.dtype(np.uint32)
            found = np.concatenate(pieces) if pieces else np.zeros(0, dtype)
            self._cache[name] = found
        return found

    @property
    def visitors(self) -> VisitorSpace:
        if self._space is None:
            self._space = self._spaces([block for block, _, _ in self.parts])
        return self._space

    def visitor_codes(self) -> np.ndarray:
        """Per row, its visitor as a frame code (see :class:`VisitorSpace`)."""
        found = self._cache.get("visitor codes")
        if found is None:
            space = self.visitors
            pieces = [space.codes(i, block.visitor_codes()[lo:hi]) for i, (block, lo, hi) in enumerate(self.parts)]
            found = self._cache["visitor codes"] = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        return found

    def visitor_codes_of(self, rows: np.ndarray) -> np.ndarray:
        """The frame visitor codes of the boolean ``rows``, gathered block by block."""
        if "visitor codes" in self._cache:
            return self._cache["visitor codes"][rows]
        space = self.visitors
        pieces = []
        start = 0
        for index, (block, lo, hi) in enumerate(self.parts):
            chosen = rows[start : start + hi - lo]
            start += hi - lo
            if chosen.any():
                pieces.append(space.codes(index, block.visitor_codes()[lo:hi][chosen]))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int64)

    def values_at(self, name: str, rows: np.ndarray) -> np.ndarray:
        """``column(name)[rows]`` (a boolean mask or row numbers), gathered block by block
        without joining the whole column."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, np.int64)
        found = self._cache.get(name)
        if found is not None:
            return found[rows]
        order = None
        if len(rows) > 1 and (np.diff(rows) < 0).any():
            order = np.argsort(rows, kind="stable")
            rows = rows[order]
        starts = np.cumsum([0] + [hi - lo for _, lo, hi in self.parts])
        bounds = np.searchsorted(rows, starts)
        pieces = []
        for index, (block, lo, _) in enumerate(self.parts):
            local = rows[bounds[index] : bounds[index + 1]] - starts[index] + lo
            if not len(local):
                continue
            if name == "visitor":
                pieces.append(block.visitor_dictionary()[block.visitor_codes()[local]])
            elif name in SCALARS:
                pieces.append(block.scalar(name)[local])
            else:
                dictionary, codes = block.dictionary(name)
                pieces.append(dictionary[codes[local]])
        dtype = SCALARS.get(name, np.dtype(np.uint32))
        out = np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.zeros(0, dtype)
        if order is not None:
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out

    def mask(self, name: str, accept: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Rows whose string field ``name`` is accepted; ``accept(distinct ids) -> bool array``
        is called once per block on that block's dictionary, never per row."""
        pieces = []
        for block, lo, hi in self.parts:
            check_budget()
            dictionary, codes = block.dictionary(name)
            pieces.append(accept(dictionary)[codes[lo:hi]])
        return np.concatenate(pieces) if pieces else np.zeros(0, bool)

    def prop_mask(self, key_ids: Iterable[int], accept: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
        """Rows with a property whose key is in ``key_ids`` and whose value is accepted
        (any value when ``accept`` is None)."""
        keys = np.fromiter(key_ids, np.uint32)
        pieces = []
        for block, lo, hi in self.parts:
            check_budget()
            out = np.zeros(hi - lo, bool)
            rows, prop_keys, prop_values = block.props()
            if len(rows) and len(keys):
                chosen = np.isin(prop_keys, keys)
                if accept is not None and chosen.any():
                    values = prop_values[chosen]
                    distinct, inverse = np.unique(values, return_inverse=True)
                    chosen[chosen] = accept(distinct)[inverse]
                hit = rows[chosen].astype(np.int64)
                hit = hit[(hit >= lo) & (hit < hi)] - lo
                out[hit] = True
            pieces.append(out)
        return np.concatenate(pieces) if pieces else np.zeros(0, bool)

    def props_of(self, key_id: int) -> np.ndarray:
        """Per row, the value id of property ``key_id`` (0 when absent)."""
        pieces = []
        for block, lo, hi in self.parts:
            out = np.zeros(hi - lo, np.uint32)
            rows, prop_keys, prop_values = block.props()
            chosen = prop_keys == key_id
            rows = rows[chosen].astype(np.int64)
            values = prop_values[chosen]
            inside = (rows >= lo) & (rows < hi)
            out[rows[inside] - lo] = values[inside]
            pieces.append(out)
        return np.concatenate(pieces) if pieces else np.zeros(0, np.uint32)
