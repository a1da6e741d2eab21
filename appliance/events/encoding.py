"""Building blocks from the event log: log rows to columns, and columns to a stored block.

``rows_to_columns`` decodes MessagePack log rows (:mod:`appliance.events.codec`) into plain
columns; ``stored_columns`` adds the day's rebuilt visits and dictionary-codes the string
fields for storage; ``check_round_trip`` decodes a freshly encoded block again and compares,
before compaction deletes the rows it replaces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec
import numpy as np

from appliance.events.blocks import (
    PROPS,
    SCALARS,
    STORED_SCALARS,
    Block,
    codes_dtype,
    encode_visit_rows,
    narrow,
)
from appliance.events.codec import STRING_FIELDS
from appliance.events.logrows import decode_rows
from appliance.events.sessions import local_visits, stored_edge_rows, with_derived
from storage.keys import unpack_event_key

_decoder = msgspec.msgpack.Decoder()
CHUNK_ROWS = 65_536  # log rows :func:`chunked_columns` decodes at a time
_KEY = np.dtype([("site", ">u4"), ("ts", ">u8"), ("seq", ">u4")])  # storage.keys.pack_event_key


def _empty_columns() -> dict[str, np.ndarray]:
    columns = {name: np.zeros(0, dtype) for name, dtype in SCALARS.items()}
    for name in STRING_FIELDS:
        columns["i." + name] = np.zeros(0, np.uint32)
    for name in PROPS:
        columns[name] = np.zeros(0, np.uint32)
    return columns


def rows_to_columns(entries: list[tuple[bytes, bytes]]) -> dict[str, np.ndarray]:
    """Decode log rows into in-memory columns (string fields as id arrays ``i.<field>``):
    in numpy passes over all rows (:mod:`appliance.events.logrows`), or row by row when
    they are not all of the current shape."""
    count = len(entries)
    if not count:
        return _empty_columns()
    joined = b"".join(key for key, _ in entries)
    fast = None
    if len(joined) == _KEY.itemsize * count:
        fast = decode_rows([value for _, value in entries], SCALARS, len(STRING_FIELDS))
    if fast is not None:
        keys = np.frombuffer(joined, _KEY)
        fast["seq"] = keys["seq"].astype(np.uint32)
        fast["ts"] = keys["ts"].astype(np.int64)
        for name, ids in zip(STRING_FIELDS, fast.pop("ids"), strict=True):
            fast["i." + name] = ids
        return fast
    return _rows_to_columns(entries)


def chunked_columns(entries: Iterable[tuple[bytes, bytes]], decoded: Callable[[], None] | None = None,
                    ) -> tuple[bytes, list[dict[str, np.ndarray]]]:
    """The keys of log rows (in their order, as one string of fixed-size keys) and their
    columns, decoded :data:`CHUNK_ROWS` rows at a time into parts to :func:`concatenate`:
    compaction reads a whole day, and its raw rows are never all in memory at once (the seed's
    day: ~437,000 rows, ~110 MB as a list of key-value pairs; the columns take ~40 MB; its keys
    as a list of objects ~25 MB, joined a chunk at a time 7 MB). ``decoded()`` is called after
    each chunk is decoded."""
    keys: list[bytes] = []  # each chunk's, joined
    parts = []
    chunk: list[tuple[bytes, bytes]] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) == CHUNK_ROWS:
            keys.append(b"".join(key for key, _ in chunk))
            parts.append(rows_to_columns(chunk))
            chunk = []
            if decoded is not None:
                decoded()
    if chunk or not parts:
        keys.append(b"".join(key for key, _ in chunk))
        parts.append(rows_to_columns(chunk))
    return b"".join(keys), parts


def log_columns(chunks: Iterable[list[tuple[bytes, bytes]]]) -> tuple[dict[str, np.ndarray], bytes | None]:
    """The columns of log rows read in chunks (:meth:`storage.eventlog.EventLog.chunks`), in
    their order, and the last row's key (None without rows): each chunk is decoded and let go
    before the next is read, so a day built from the log holds its columns (~40 MB at the
    seed's day) and one chunk's rows, never the day's rows (~110 MB) as well."""
    parts, last_key = [], None
    for chunk in chunks:
        parts.append(rows_to_columns(chunk))
        last_key = chunk[-1][0]
    if len(parts) == 1:
        return parts[0], last_key
    return (concatenate(parts, release=True) if parts else _empty_columns()), last_key


def _rows_to_columns(entries: list[tuple[bytes, bytes]]) -> dict[str, np.ndarray]:
    """:func:`rows_to_columns`, one row at a time (any row shape the log ever held)."""
    count = len(entries)
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


def concatenate(parts: list[dict[str, np.ndarray]], release: bool = False) -> dict[str, np.ndarray]:
    """In-memory columns of several row sets, one after the other. With ``release`` each
    column leaves ``parts`` once joined, so the parts and the whole are never both held in
    full (compaction joins a day's chunks: ~60 MB of columns at the seed's scale)."""
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
        if release:
            del pieces
            for part in parts:
                del part[name]
    return out


def take(columns: dict[str, np.ndarray], rows: np.ndarray, release: bool = False) -> dict[str, np.ndarray]:
    """The in-memory columns of ``rows`` (indices), in that order. With ``release`` each
    column leaves ``columns`` once taken, so a day's columns are not held twice (compaction)."""
    count = len(columns["ts"])
    out = {}
    for name in (*SCALARS, *("i." + f for f in STRING_FIELDS)):
        out[name] = columns[name][rows]
        if release:
            del columns[name]
    new_row = np.full(count, -1, np.int64)
    new_row[rows] = np.arange(len(rows))
    mapped = new_row[columns["p.row"].astype(np.int64)]
    keep = mapped >= 0
    order = np.argsort(mapped[keep], kind="stable")
    out["p.row"] = mapped[keep][order].astype(np.uint32)
    for name in ("p.key", "p.value"):
        out[name] = columns[name][keep][order]
        if release:
            del columns[name]
    if release:
        del columns["p.row"]
    return out


def in_key_order(columns: dict[str, np.ndarray], release: bool = False) -> dict[str, np.ndarray]:
    """Rows sorted as the log's keys are: by timestamp, then sequence (``release``: see :func:`take`)."""
    order = np.lexsort((columns["seq"], columns["ts"]))
    if len(order) and (np.diff(order) == 1).all():
        return columns
    return take(columns, order, release)


class CodedColumns(dict):
    """In-memory columns whose string fields :func:`stored_columns` lets go once it has coded
    them: ``columns["i.<field>"]`` is then made again from the field's dictionary and codes,
    a new array each time it is asked for. A seed day's build (330,000 rows) held its 25 id
    columns (4 bytes a row each, 33 MB) through the visits' sessionisation, its peak; their
    codes take a byte or two a row (compaction's helper, docs/performance.md, twenty-sixth part)."""

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        super().__init__(columns)
        self._coded: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __missing__(self, name: str) -> np.ndarray:
        dictionary, codes = self._coded[name]
        return dictionary[codes]

    def let_go(self, field: str, dictionary: np.ndarray, codes: np.ndarray) -> None:
        """Keep ``field``'s ids as its dictionary and codes from now on; they must give back
        exactly the ids held (checked here: the round-trip check compares with them later)."""
        name = "i." + field
        if not np.array_equal(dictionary[codes], super().__getitem__(name)):
            raise AssertionError(f"the codes of {field} do not give back its ids")
        self._coded[name] = dictionary, codes
        del self[name]


def stored_columns(columns: dict[str, np.ndarray], day: int, timeout_ms: int) -> dict[str, np.ndarray]:
    """What a block stores for in-memory ``columns`` (see the module docstring); of
    :class:`CodedColumns` each string field's ids are let go once coded (the page path's once
    the visits and edge rows are made)."""
    out = {name: columns[name] for name in STORED_SCALARS}
    coded = isinstance(columns, CodedColumns)
    for name in STRING_FIELDS:
        dictionary, codes = np.unique(columns["i." + name], return_inverse=True)
        out["d." + name] = dictionary.astype(np.uint32)
        out["c." + name] = codes.astype(codes_dtype(len(dictionary)))
        del dictionary, codes
        if coded and name != "path":
            columns.let_go(name, out["d." + name], out["c." + name])
    sessions, session_codes = np.unique(columns["session"], return_inverse=True)
    out["d.session"] = sessions.astype(np.uint64)
    out["c.session"] = session_codes.astype(codes_dtype(len(sessions)))
    del sessions, session_codes
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
    out["v.ping"] = narrow(visitor_codes[visits["visit_of"] < 0])
    out["s.visitor"] = narrow(visits["visitor"])
    out["s.start"] = visits["start"]
    out["s.duration"] = narrow(visits["end"] - visits["start"])
    out["s.first_row"] = visits["first_row"]
    out["s.pageviews"] = narrow(visits["pageviews"])
    out["s.interactive"] = visits["interactive"].astype(np.uint8)
    out["s.late"] = visits["late"].astype(np.int32)
    out["s.early"] = visits["early"].astype(np.int32)
    edge = stored_edge_rows(visits, len(visitors), timeout_ms)  # format 5: visits stitched across midnight read these
    out["e.row"] = edge.astype(np.uint32)
    out["e.ts"] = columns["ts"][edge]
    out["e.session"] = columns["session"][edge].astype(np.uint64)
    out["e.path"] = columns["i.path"][edge].astype(np.uint32)
    path_dictionary = out["d.path"]
    for name, key in (("s.entry", "entry_page"), ("s.exit", "exit_page")):
        pages = visits[key]
        codes = np.searchsorted(path_dictionary, pages) + 1
        out[name] = narrow(np.where(pages == 0, 0, codes))
    if coded:
        columns.let_go("path", path_dictionary, out["c.path"])
    return out


def check_round_trip(block: Block, columns: dict[str, np.ndarray], timeout_ms: int) -> None:
    """A block decoded from its stored bytes must give back every row and visit. The rows are
    compared a column at a time, each decoded column let go after (``block`` is the encoded
    block's own, read for nothing else): the day's columns are held once beside ``columns``,
    not twice."""
    for name in (*SCALARS, *("i." + f for f in STRING_FIELDS), *PROPS):
        decoded = block.scalar(name) if name in SCALARS else block.ids(name[2:]) if name[:2] == "i." else block.column(name)
        same = np.array_equal(decoded.astype(np.int64), columns[name].astype(np.int64)) or (
            name in ("visitor", "session") and np.array_equal(decoded, columns[name])
        )
        if not same:
            raise AssertionError(f"column {name} of site {block.site} day {block.day} does not round-trip")
        del decoded
        block.release()
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
    rows, ts, session, path = block.edge_rows(timeout_ms)
    if not np.array_equal(rows, stored_edge_rows(fresh, len(block.visitor_dictionary()), timeout_ms)) or not (
        np.array_equal(ts, columns["ts"][rows])
        and np.array_equal(session, columns["session"][rows])
        and np.array_equal(path, columns["i.path"][rows])
    ):
        raise AssertionError(f"edge rows of site {block.site} day {block.day} do not round-trip")


