"""Rendering rows of a column block straight to interchange NDJSON or CSV bytes.

The same bytes as encoding an :class:`~appliance.events.interchange.Line` per event with
msgspec (NDJSON) or :mod:`csv` (CSV) — a test holds them equal — but built column by column:
each distinct string of a block is encoded once (:class:`Fragments`, kept for the block across
chunks), and a row is one ``join`` of pre-encoded pieces. That is what lets an export stream
several hundred thousand events a second on one core.
"""

from __future__ import annotations

from binascii import hexlify
from itertools import chain, repeat

import msgspec
import numpy as np

from appliance.events.blocks import Block
from appliance.events.codec import STRING_FIELDS
from appliance.events.interchange import COLUMNS, KIND_NAMES, VERSION

_KIND = {int(kind): name for kind, name in KIND_NAMES.items()}
_json = msgspec.json.Encoder()
_RISKY = frozenset("=+-@\t\r'")
_CSV_SPECIAL = frozenset(',"\r\n')
_TAIL_FIELDS = ("revenue", "engaged_ms", "scroll_depth")
_ID = np.dtype([("t", ">u8"), ("s", ">u4")])  # an event id's time and sequence, big-endian: its hex


def csv_cell(text: str) -> str:
    """A CSV cell as :func:`appliance.events.interchange.csv_row` and :mod:`csv` write it."""
    if text and text[0] in _RISKY:
        text = "'" + text
    if not _CSV_SPECIAL.isdisjoint(text):
        return '"' + text.replace('"', '""') + '"'
    return text


class Fragments:
    """Per string field of one block, each code's encoded piece (filled as codes appear): a
    table indexed by code, so a column's pieces are one gather."""

    def __init__(self, block: Block, text, csv: bool) -> None:
        self._block = block
        self._text = text
        self._csv = csv
        self._tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def _table(self, name: str):
        found = self._tables.get(name)
        if found is None:
            dictionary, codes = self._block.dictionary(name)
            size = len(dictionary)
            found = self._tables[name] = (dictionary, codes, np.empty(size, dtype=object), np.zeros(size, dtype=bool))
        return found

    def column(self, name: str, rows: np.ndarray) -> list[bytes] | None:
        """Each row's piece of field ``name``; None when every one is empty (a default)."""
        dictionary, codes, pieces, filled = self._table(name)
        chosen = codes[rows]
        for code in np.unique(chosen[~filled[chosen]]).tolist():
            value = self._text(int(dictionary[code]))
            if self._csv:
                pieces[code] = ("," + csv_cell(value)).encode()
            elif not value or (name == "path" and value == "/"):
                pieces[code] = b""  # a default: left out, as msgspec's omit_defaults does
            else:
                pieces[code] = b',"' + name.encode() + b'":' + _json.encode(value)
            filled[code] = True
        out = pieces[chosen].tolist()
        if not self._csv and not any(out):
            return None
        return out


def _props(block: Block, rows: np.ndarray, text) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    prop_rows, keys, values = block.props()
    if len(prop_rows) and len(rows):
        chosen = np.isin(prop_rows, rows)
        for row, key, value in zip(prop_rows[chosen].tolist(), keys[chosen].tolist(), values[chosen].tolist(), strict=True):
            found.setdefault(row, {})[text(key)] = text(value)
    return found


def _hex(values: np.ndarray, dtype: str, width: int) -> list[bytes]:
    """Each value as fixed-width lower-case hex (``width`` digits), in one pass."""
    return np.frombuffer(hexlify(np.ascontiguousarray(values, dtype=dtype).tobytes()), dtype=f"S{width}").tolist()


def _decimal(values: np.ndarray) -> list[bytes]:
    return list(map(b"%d".__mod__, values.tolist()))


def _when(mask: np.ndarray, pieces: list[bytes]) -> list[bytes]:
    """``pieces`` where ``mask`` holds, else empty."""
    return [piece if keep else b"" for piece, keep in zip(pieces, mask.tolist(), strict=True)]


def _kind_table(csv: bool) -> list[bytes]:
    if csv:
        return [f",{_KIND.get(code, 'custom')},".encode() for code in range(256)]
    return [f',"kind":"{_KIND.get(code, "custom")}","visitor":"'.encode() for code in range(256)]


_KIND_PIECES = {False: _kind_table(False), True: _kind_table(True)}


def render(block: Block, rows: np.ndarray, site_id: int, fragments: Fragments, text, csv: bool) -> bytes:
    """Rows ``rows`` of ``block`` as NDJSON lines or CSV rows (``\\r\\n``), in order.

    Column by column: every column becomes a list of byte pieces (numbers and hex ids in bulk,
    strings from :class:`Fragments`), and the rows are one C-level interleaving of them."""
    count = len(rows)
    if not count:
        return b""
    scalar = block.scalar
    ids = np.empty(count, dtype=_ID)
    ids["t"] = scalar("ts")[rows]
    ids["s"] = scalar("seq")[rows]
    kind_pieces = _KIND_PIECES[csv]
    kinds = [kind_pieces[code] for code in scalar("kind")[rows].tolist()]
    visitors = _hex(scalar("visitor")[rows], ">u8", 16)
    event_ids = np.frombuffer(hexlify(ids.tobytes()), dtype="S24").tolist()
    moments = _decimal(ids["t"])
    strings = [column for name in STRING_FIELDS if (column := fragments.column(name, rows)) is not None]
    props = _props(block, rows, text)
    where = np.searchsorted(rows, list(props)).tolist() if props else []
    site = f"{site_id:08x}".encode()
    revenue, engaged, scroll = scalar("revenue")[rows], scalar("engaged")[rows], scalar("scroll")[rows]
    user, session = scalar("user")[rows], scalar("session")[rows]
    if csv:
        cells = [b""] * count
        for index, found in zip(where, props.values(), strict=True):
            cells[index] = csv_cell(_json.encode(found).decode()).encode()
        hints = _when(session != 0, _hex(session, ">u8", 16)) if session.any() else [b""] * count
        tails = [b",%b,%d,%d,%d,%d,%b\r\n" % fields for fields in zip(
            cells, revenue.tolist(), engaged.tolist(), scroll.tolist(), (user != 0).view(np.uint8).tolist(), hints,
            strict=True)]
        columns = [repeat(f"{VERSION},".encode()), moments, kinds, visitors, repeat(b"," + site), event_ids, *strings,
                   tails]
    else:
        columns = [repeat(f'{{"v":{VERSION},"t":'.encode()), moments, kinds, visitors, repeat(b'","id":"' + site),
                   event_ids, repeat(b'"'), *strings]
        if props:
            cells = [b""] * count
            for index, found in zip(where, props.values(), strict=True):
                cells[index] = b',"props":' + _json.encode(found)
            columns.append(cells)
        for name, values in zip(_TAIL_FIELDS, (revenue, engaged, scroll), strict=True):
            if values.any():
                template = f',"{name}":'.encode() + b"%d"
                columns.append([template % value if value else b"" for value in values.tolist()])
        if user.any():
            columns.append([b',"user":true' if flag else b"" for flag in user.tolist()])
        if session.any():
            columns.append(_when(session != 0, [b',"session":"' + digits + b'"' for digits in _hex(session, ">u8", 16)]))
        columns.append(repeat(b"}\n"))
    return b"".join(chain.from_iterable(zip(*columns, strict=False)))  # the repeat()s are endless


CSV_HEADER = (",".join(COLUMNS) + "\r\n").encode()
