"""Rendering rows of a column block straight to interchange NDJSON or CSV bytes.

The same bytes as encoding an :class:`~appliance.events.interchange.Line` per event with
msgspec (NDJSON) or :mod:`csv` (CSV) — a test holds them equal — but built column by column:
each distinct string of a block is encoded once (:class:`Fragments`, kept for the block across
chunks), and a row is one ``join`` of pre-encoded pieces. That is what lets an export stream
several hundred thousand events a second on one core.
"""

from __future__ import annotations

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


def csv_cell(text: str) -> str:
    """A CSV cell as :func:`appliance.events.interchange.csv_row` and :mod:`csv` write it."""
    if text and text[0] in _RISKY:
        text = "'" + text
    if not _CSV_SPECIAL.isdisjoint(text):
        return '"' + text.replace('"', '""') + '"'
    return text


class Fragments:
    """Per string field of one block, each code's encoded piece (filled as codes appear)."""

    def __init__(self, block: Block, text, csv: bool) -> None:
        self._block = block
        self._text = text
        self._csv = csv
        self._pieces: dict[str, dict[int, bytes]] = {name: {} for name in STRING_FIELDS}
        self._dictionaries = {}

    def column(self, name: str, rows: np.ndarray) -> list[bytes]:
        found = self._dictionaries.get(name)
        if found is None:
            found = self._dictionaries[name] = self._block.dictionary(name)
        dictionary, codes = found
        chosen = codes[rows]
        pieces = self._pieces[name]
        for code in np.unique(chosen).tolist():
            if code not in pieces:
                value = self._text(int(dictionary[code]))
                if self._csv:
                    pieces[code] = ("," + csv_cell(value)).encode()
                elif not value or (name == "path" and value == "/"):
                    pieces[code] = b""  # a default: left out, as msgspec's omit_defaults does
                else:
                    pieces[code] = b',"' + name.encode() + b'":' + _json.encode(value)
        return [pieces[code] for code in chosen.tolist()]


def _props(block: Block, rows: np.ndarray, text) -> dict[int, dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    prop_rows, keys, values = block.props()
    if len(prop_rows) and len(rows):
        chosen = np.isin(prop_rows, rows)
        for row, key, value in zip(prop_rows[chosen].tolist(), keys[chosen].tolist(), values[chosen].tolist(), strict=True):
            found.setdefault(row, {})[text(key)] = text(value)
    return found


def render(block: Block, rows: np.ndarray, site_id: int, fragments: Fragments, text, csv: bool) -> bytes:
    """Rows ``rows`` of ``block`` as NDJSON lines or CSV rows (``\\r\\n``), in order."""
    scalar = block.scalar
    ts = scalar("ts")[rows].tolist()
    seq = scalar("seq")[rows].tolist()
    kind = scalar("kind")[rows].tolist()
    visitor = scalar("visitor")[rows].tolist()
    user = scalar("user")[rows].tolist()
    session = scalar("session")[rows].tolist()
    revenue = scalar("revenue")[rows].tolist()
    engaged = scalar("engaged")[rows].tolist()
    scroll = scalar("scroll")[rows].tolist()
    strings = [b"".join(pieces) for pieces in zip(*(fragments.column(name, rows) for name in STRING_FIELDS), strict=True)]
    props = _props(block, rows, text)
    site = f"{site_id:08x}"
    out = []
    append = out.append
    for index, row in enumerate(rows.tolist()):
        moment, sequence = ts[index], seq[index]
        event_id = f"{site}{moment:016x}{sequence:08x}"
        kind_name = _KIND.get(kind[index], "custom")
        found = props.get(row)
        if csv:
            head = f"{VERSION},{moment},{kind_name},{visitor[index]:016x},{event_id}".encode()
            prop_cell = csv_cell(_json.encode(found).decode()) if found else ""
            hint = f"{session[index]:016x}" if session[index] else ""
            tail = f",{prop_cell},{revenue[index]},{engaged[index]},{scroll[index]},{1 if user[index] else 0},{hint}\r\n"
            append(head + strings[index] + tail.encode())
            continue
        head = f'{{"v":{VERSION},"t":{moment},"kind":"{kind_name}","visitor":"{visitor[index]:016x}","id":"{event_id}"'
        if found or revenue[index] or engaged[index] or scroll[index] or user[index] or session[index]:
            extra = []
            if found:
                extra.append(b',"props":' + _json.encode(found))
            for name, value in zip(_TAIL_FIELDS, (revenue[index], engaged[index], scroll[index]), strict=True):
                if value:
                    extra.append(f',"{name}":{value}'.encode())
            if user[index]:
                extra.append(b',"user":true')
            if session[index]:
                extra.append(f',"session":"{session[index]:016x}"'.encode())
            append(head.encode() + strings[index] + b"".join(extra) + b"}\n")
        else:
            append(head.encode() + strings[index] + b"}\n")
    return b"".join(out)


CSV_HEADER = (",".join(COLUMNS) + "\r\n").encode()
