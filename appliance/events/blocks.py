"""Column blocks: one site's events of one UTC day as numpy columns.

A *block* holds ``ts`` (milliseconds), ``seq`` (the log sequence), ``kind``, ``user``,
``revenue``, ``engaged``, ``scroll``; the client session hash and each interned string field of
:data:`appliance.events.codec.STRING_FIELDS` as a per-block dictionary plus small codes
(``uint8``/``uint16``/``uint32``), so a filter is evaluated once per distinct value and becomes
a mask with one gather; event properties as three parallel arrays (row, key id, value id);
the day's distinct visitor hashes, sorted (``v.dict``); and the day's *visits* (rebuilt by the
glossary's rule, see :mod:`appliance.events.sessions`): per row its visit (``s.row``, compactly
coded), per visit its visitor (a code into ``v.dict``), start, duration, first row, page
views, whether it was interactive, entry and exit page. A row's visitor is its visit's
(engagement pings, which belong to no visit, keep theirs in ``v.ping``). Since format 5, the
rows of its *edge chains* (:func:`appliance.events.sessions.stored_edge_rows`) with their time,
session hash and page (``e.*``): visits are stitched across midnight without whole columns. A stored block loads
each column on first use, so a query reads the few columns it needs. How blocks are built
from log rows is :mod:`appliance.events.encoding`; how they are stored, cached and kept
current is :mod:`appliance.events.columns`.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator

import msgspec
import numpy as np

from appliance.events.codec import STRING_FIELDS
from appliance.events.sessions import LazyVisits, local_visits, with_derived
from appliance.models import Event, EventKind
from storage.keys import pack_event_key

FORMAT_VERSION = 5  # 3: visits near midnight stored (s.late, s.early); 4: entry/exit page of visits without page views;
# 5: the rows of the day's edge chains with their time, session hash and page (e.row, e.ts, e.session, e.path)
DAY_MS = 86_400_000
CLOSE_GRACE_SECONDS = 15 * 60  # a day is compacted this long after it ends (late batches)
CACHE_BYTES = 3 << 30  # decoded columns kept in memory when no budget says otherwise (events/block_cache.py)
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
DELTA_COLUMNS = frozenset({"seq", "ts", "p.row", "s.start", "s.first_row", "e.row", "e.ts"})
EDGE_COLUMNS = ("e.row", "e.ts", "e.session", "e.path")
PROPS = ("p.row", "p.key", "p.value")
VISIT_COLUMNS = (
    "s.visitor", "s.start", "s.duration", "s.first_row", "s.pageviews", "s.interactive", "s.entry", "s.exit", "s.late", "s.early",
)
FIELD_INDEX = {name: index for index, name in enumerate(STRING_FIELDS)}
ENGAGEMENT = int(EventKind.ENGAGEMENT)
_decoder = msgspec.msgpack.Decoder()


def dictionary_of(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` of interned string ids as ``(uint32, small codes)``:
    ids are dense, so marking the present ones is several times faster than sorting."""
    top = int(ids.max()) if len(ids) else 0
    if top > 4 * len(ids) + 4096:
        dictionary, codes = np.unique(ids, return_inverse=True)
        return dictionary.astype(np.uint32), codes.astype(codes_dtype(len(dictionary)))
    present = np.zeros(top + 1, bool)
    present[ids] = True
    dictionary = np.flatnonzero(present).astype(np.uint32)
    code_of = np.cumsum(present, dtype=np.int64) - 1
    return dictionary, code_of[ids].astype(codes_dtype(len(dictionary)))


class StaleBlock(RuntimeError):
    """A block's generation was replaced and removed while a reader still used it."""


def codes_dtype(size: int) -> np.dtype:
    if size <= 1 << 8:
        return np.dtype(np.uint8)
    if size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative integers in the narrowest unsigned dtype that holds them."""
    top = int(values.max()) if len(values) else 0
    return values.astype(codes_dtype(top + 1))


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
    return narrow(codes)


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
        self.used = 0.0  # when the block cache last handed it out (its clock)
        self.on_grow = None  # the block cache's resize, while cached: lazily loaded arrays count at once
        self._sized: tuple[int, int] = (-1, 0)  # (how many arrays, their bytes) when last measured
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
            self.grew()
        return found

    def release(self) -> None:
        """Let go of a stored block's loaded columns and derived results (each loads again on
        next use; a block built from the log keeps its only copy): a scan day by day calls it
        for a block the cache does not keep, so its peak is a day's columns, not the period's."""
        if not self.stored:
            return
        with self._lock:
            self.columns = {}
            self.derived = {}
            self._sized = (-1, 0)

    def grew(self) -> None:
        """Tell the block cache this block holds a new array (see :attr:`on_grow`)."""
        hook = self.on_grow
        if hook is not None:
            hook(self)

    def nbytes(self) -> int:
        """Bytes of the arrays held (raw columns and derived results), each counted once:
        decoded visits share arrays with the raw columns. Measured again only when arrays
        were added since."""
        arrays = list(self.columns.values())
        for value in list(self.derived.values()):
            if isinstance(value, np.ndarray):
                arrays.append(value)
            elif isinstance(value, dict):
                arrays.extend(a for a in list(value.values()) if isinstance(a, np.ndarray))
        if len(arrays) != self._sized[0]:
            unique = {id(a): a.nbytes for a in arrays}
            self._sized = (len(arrays), sum(unique.values()) + getattr(self.columns, "pending_bytes", 0))  # + undecoded
        return self._sized[1]

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
            self.grew()
        return found

    def dictionary(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(distinct ids, codes)`` of a string field: ``ids == dictionary[codes]``."""
        if self.stored:
            return self.column("d." + name), self.column("c." + name)

        def make():
            return dictionary_of(self.columns["i." + name])

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
            visitor = self.column("s.visitor")
            codes = np.empty(self.count, np.int32)  # indices into the day's dictionary: half of int64's bytes
            inside = visit_of >= 0
            codes[inside] = visitor[visit_of[inside]]
            codes[~inside] = self.column("v.ping")
            return codes

        return self._cached("visitor_codes", make)

    def visitor_codes_at(self, rows: np.ndarray) -> np.ndarray:
        """``visitor_codes()[rows]`` (row numbers): a stored block whose codes are not decoded
        yet reads only those rows' visits, not every row's (a few rows are asked for when
        visits are stitched across midnight, or conversions counted)."""
        found = self.derived.get("visitor_codes")
        if found is not None or not self.stored:
            return self.visitor_codes()[rows]
        visit_of = self.column_visit_rows()
        visits = visit_of[rows]
        codes = np.empty(len(visits), np.int64)
        inside = visits >= 0
        codes[inside] = self.column("s.visitor")[visits[inside]]
        if not inside.all():
            ping_number = np.cumsum(visit_of < 0) - 1  # a ping row's place among the block's pings
            codes[~inside] = self.column("v.ping")[ping_number[rows[~inside]]]
        return codes

    def sessions_at(self, rows: np.ndarray) -> np.ndarray:
        """``scalar("session")[rows]`` (row numbers), without joining every row's hash."""
        if not self.stored or "session" in self.derived:
            return self.scalar("session")[rows]
        return self.column("d.session")[self.column("c.session")[rows]]

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
        if self.stored and self.timeout_ms == timeout_ms and self.format >= 4:

            def make():
                # the visits are kept in the block: a strong reference back would be a cycle
                alive, site, day = weakref.ref(self), self.site, self.day

                def block_of() -> Block:
                    block = alive()
                    if block is None:  # a reader kept the visits but let the block go
                        raise StaleBlock(f"block of site {site} day {day} was released")
                    return block

                def column(name: str) -> np.ndarray:
                    return block_of().column(name)

                def counted(make):  # a value decoded on first use counts against the block cache
                    def run(visits):
                        value = make(visits)
                        block_of().grew()
                        return value

                    return run

                makers = {
                    # the block's own decoded visit rows (visitor codes read them too): one copy
                    "visit_of": lambda _: block_of().column_visit_rows(),
                    "visitor": lambda _: column("s.visitor"),
                    "start": lambda _: column("s.start"),
                    "duration": lambda _: column("s.duration"),
                    "end": lambda v: v["start"] + v["duration"],
                    "first_row": lambda _: column("s.first_row"),
                    "pageviews": lambda _: column("s.pageviews"),
                    "interactive": lambda _: column("s.interactive").astype(bool),
                    "bounce": lambda v: (v["pageviews"] == 1) & (column("s.interactive") == 0),
                    "entry_page": lambda _: _page_ids(column("d.path"), column("s.entry")),
                    "exit_page": lambda _: _page_ids(column("d.path"), column("s.exit")),
                    "late": lambda _: column("s.late"),
                    "early": lambda _: column("s.early"),
                }
                return LazyVisits({name: counted(make) for name, make in makers.items()})

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

    def has_edge_rows(self, timeout_ms: int) -> bool:
        return self.stored and self.format >= 5 and self.timeout_ms == timeout_ms

    def edge_rows(self, timeout_ms: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The rows of the day's edge chains with their ``ts``, session hash and path id, as
        stored since format 5 (None without them, or cut with another visit timeout)."""
        if self.has_edge_rows(timeout_ms):
            return self.column("e.row").astype(np.int64), self.column("e.ts"), self.column("e.session"), self.column("e.path")
        return None

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
        """Rows ``lo:hi`` as ``(log key, Event)``, as :func:`appliance.events.codec.decode_event` would."""
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
