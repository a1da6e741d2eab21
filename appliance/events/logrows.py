"""Event log rows to columns in numpy passes, not one Python decode per row.

A day's block that is not stored yet (today, and every closed day after a bulk load until
the compaction job has run) is built from its log rows. Decoding 270 k MessagePack rows one
by one and collecting their fields into tuples took 1.5-2.5 s at the seed's month (issue 17),
more than the rest of a cold filtered 30-day query, and after a bulk load it was the whole
query: thirty days of it ran past the time budget.

Every row has the same shape (:func:`appliance.events.codec.encode_event`): an array of nine
items — kind, visitor, user, session, the string ids (one array of
``len(STRING_FIELDS)``), the property ids, revenue, engaged, scroll — all integers. The rows
are joined into one byte buffer and read item by item *for all rows at once*: each step
reads every row's type byte at its cursor, gathers the big-endian integer behind it and
moves each cursor by its own width. Rows with properties (a variable-length array) are
decoded one by one with msgspec (a small share: custom events); the rest stays vectorised.

:func:`decode_rows` returns ``None`` when anything is not as expected (another array
length, a non-integer, a value outside its column's type, a row not consumed exactly),
and the caller decodes the plain way, so the result is always the plain decoder's.
"""

from __future__ import annotations

import msgspec
import numpy as np

_decoder = msgspec.msgpack.Decoder()
_FIXARRAY_9 = 0x99
_EMPTY_ARRAY = 0x90
_ARRAY16 = 0xDC
#: payload bytes after the type byte, per type byte (0: the value is in the type byte itself)
_PAYLOAD = np.full(256, -1, np.int64)
_PAYLOAD[0x00:0x80] = 0  # positive fixint
_PAYLOAD[0xE0:0x100] = 0  # negative fixint
_PAYLOAD[[0xCC, 0xCD, 0xCE, 0xCF]] = [1, 2, 4, 8]  # uint 8/16/32/64
_PAYLOAD[[0xD0, 0xD1, 0xD2, 0xD3]] = [1, 2, 4, 8]  # int 8/16/32/64
_SIGNED = np.zeros(256, bool)
_SIGNED[[0xD0, 0xD1, 0xD2, 0xD3]] = True
_SIGNED[0xE0:0x100] = True


#: rows read per pass: every temporary array stays small (in the CPU's cache, and below the
#: allocator's mmap threshold, so no fresh pages to fault in), and the passes do not get slower
CHUNK_ROWS = 16_384


class _Irregular(Exception):
    """The rows are not all of the expected shape: decode them the plain way."""


class _Reader:
    """Cursors into the joined rows, one per row being read."""

    def __init__(self, buffer: np.ndarray, cursors: np.ndarray) -> None:
        self.buffer = buffer
        self.at = cursors

    def expect(self, byte: int) -> None:
        if not (self.buffer[self.at] == byte).all():
            raise _Irregular
        self.at += 1

    def integer(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's next item as ``(bits as uint64, whether it is negative)``."""
        tags = self.buffer[self.at]
        widths = _PAYLOAD[tags]
        if (widths < 0).any():
            raise _Irregular  # not an integer
        values = tags.astype(np.uint64)
        longest = int(widths.max()) if len(widths) else 0
        if longest:
            wide = widths > 0
            values[wide] = 0
            for step in range(longest):
                more = widths > step
                if not more.all():
                    rows = np.flatnonzero(more)
                    values[rows] = (values[rows] << np.uint64(8)) | self.buffer[self.at[rows] + 1 + step]
                else:
                    values = (values << np.uint64(8)) | self.buffer[self.at + 1 + step]
        signed = _SIGNED[tags]
        negative = np.zeros(len(tags), bool)
        if signed.any():
            fixint = tags >= 0xE0
            bits = np.where(fixint, 8, widths * 8).astype(np.uint64)
            sign = np.uint64(1) << (bits - np.uint64(1))
            negative = signed & ((values & sign) != 0)
            extend = ~((np.uint64(1) << bits) - np.uint64(1))  # bits 64: shifted out, nothing to extend
            extend[bits == 64] = 0
            values = np.where(negative, values | extend, values)
        self.at += widths + 1
        return values, negative


def _column(bits: np.ndarray, negative: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The values as ``dtype``; out of its range is irregular (the plain decoder raises)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "u":
        if negative.any() or (dtype.itemsize < 8 and (bits > np.iinfo(dtype).max).any()):
            raise _Irregular
        return bits.astype(dtype)
    signed = bits.view(np.int64)
    if ((signed < 0) != negative).any():
        raise _Irregular  # an unsigned value above the int64 range
    info = np.iinfo(dtype)
    if len(signed) and (signed.min() < info.min or signed.max() > info.max):
        raise _Irregular
    return signed.astype(dtype)


def decode_rows(values: list[bytes], dtypes: dict[str, np.dtype], width: int) -> dict[str, np.ndarray] | None:
    """The columns of MessagePack log rows (see the module docstring), or ``None`` if they
    are not all of the expected shape. ``dtypes`` names the scalar columns' types; ``width``
    is the number of string ids per row. String ids come back as ``ids``, a list of ``width``
    arrays (one per field)."""
    if not values:
        return None
    parts = []
    for first in range(0, len(values), CHUNK_ROWS):
        part = _decode_chunk(values[first : first + CHUNK_ROWS], dtypes, width)
        if part is None:
            return None
        part["p.row"] += np.uint32(first)
        parts.append(part)
    if len(parts) == 1:
        return parts[0]
    out = {name: np.concatenate([part[name] for part in parts]) for name in parts[0] if name != "ids"}
    out["ids"] = [np.concatenate([part["ids"][index] for part in parts]) for index in range(width)]
    return out


def _decode_chunk(values: list[bytes], dtypes: dict[str, np.dtype], width: int) -> dict[str, np.ndarray] | None:
    count = len(values)
    lengths = np.fromiter(map(len, values), np.int64, count)
    starts = np.zeros(count, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    buffer = np.frombuffer(b"".join(values) + bytes(16), np.uint8)  # padding: reads past a short row stay inside
    try:
        return _decode(values, buffer, starts, lengths, dtypes, width)
    except _Irregular:
        return None


def _decode(values, buffer, starts, lengths, dtypes, width) -> dict[str, np.ndarray]:
    count = len(values)
    read = _Reader(buffer, starts.copy())
    read.expect(_FIXARRAY_9)
    columns = {name: _column(*read.integer(), dtypes[name]) for name in ("kind", "visitor", "user", "session")}
    if width <= 15:
        read.expect(0x90 | width)
    else:
        read.expect(_ARRAY16)
        read.expect(width >> 8)
        read.expect(width & 0xFF)
    ids = [_column(*read.integer(), np.dtype(np.uint32)) for _ in range(width)]
    plain = buffer[read.at] == _EMPTY_ARRAY
    simple = np.flatnonzero(plain)
    with_props = np.flatnonzero(~plain)
    tail = _Reader(buffer, read.at[simple] + 1)
    for name in ("revenue", "engaged", "scroll"):
        column = np.empty(count, dtypes[name])
        column[simple] = _column(*tail.integer(), dtypes[name])
        columns[name] = column
    if not (tail.at == starts[simple] + lengths[simple]).all():
        raise _Irregular  # a row longer or shorter than its items
    prop_rows: list[int] = []
    prop_ids: list[int] = []
    tails: list[list] = []
    for row in with_props.tolist():
        decoded = _decoder.decode(values[row])
        props = decoded[5]
        if len(decoded) != 9 or not isinstance(props, list) or len(props) % 2:
            raise _Irregular
        tails.append(decoded[6:])
        prop_rows.extend([row] * (len(props) // 2))
        prop_ids.extend(props)
    if tails:
        for name, found in zip(("revenue", "engaged", "scroll"), zip(*tails, strict=True), strict=True):
            if not all(type(value) is int for value in found):
                raise _Irregular
            info = np.iinfo(dtypes[name])
            if not (info.min <= min(found) and max(found) <= info.max):
                raise _Irregular
            columns[name][with_props] = found
    try:
        flat = np.array(prop_ids, np.uint32) if prop_ids else np.zeros(0, np.uint32)
    except (OverflowError, TypeError, ValueError):
        raise _Irregular from None
    columns["p.row"] = np.array(prop_rows, np.uint32) if prop_rows else np.zeros(0, np.uint32)
    columns["p.key"] = flat[0::2].copy()
    columns["p.value"] = flat[1::2].copy()
    columns["ids"] = ids
    return columns
