"""Log rows decoded in numpy passes (appliance/events/logrows.py) equal the row-by-row decoder's
columns, for every integer width MessagePack picks and rows with and without properties; rows
of another shape fall back to the row-by-row decoder."""

from __future__ import annotations

import random

import msgspec
import numpy as np
import pytest

from appliance.events import encoding, logrows
from appliance.events.codec import STRING_FIELDS, encode_event
from appliance.events.encoding import _rows_to_columns, rows_to_columns
from appliance.models import Event, EventKind
from storage.keys import pack_event_key

WIDTHS = (0, 5, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1)  # fixint, u8, u16, u32 boundaries


def _rows(rng: random.Random, count: int) -> list[tuple[bytes, bytes]]:
    entries = []
    encode = msgspec.msgpack.Encoder().encode
    for index in range(count):
        props = []
        if rng.random() < 0.3:
            props = [rng.choice(WIDTHS) for _ in range(2 * rng.randint(1, 3))]
        row = (
            rng.choice((1, 2, 3, 4)),
            rng.choice((0, 1, 200, 70_000, 2**40, 2**63 + 5, 2**64 - 1)),  # visitor: any u64
            rng.randint(0, 1),
            rng.choice((0, 2**64 - 1, 12_345)),
            [rng.choice(WIDTHS) for _ in STRING_FIELDS],
            props,
            rng.choice((0, 1, -1, -32, -33, -200, -40_000, -(2**40), 2**40, 999)),  # revenue: signed widths
            rng.choice((0, 100, 60_000, -5, 2**31 - 1)),
            rng.choice((0, 100, -1, 32_767)),
        )
        entries.append((pack_event_key(3, 1_700_000_000_000 + index * 7, index * 3 + rng.randint(0, 2)), encode(row)))
    return entries


def _assert_same(fast: dict, plain: dict) -> None:
    assert fast.keys() == plain.keys()
    for name in plain:
        assert fast[name].dtype == plain[name].dtype, name
        assert np.array_equal(fast[name], plain[name]), name


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorised_rows_equal_the_row_by_row_decoder(seed, monkeypatch):
    entries = _rows(random.Random(seed), 400)
    fallbacks = []
    monkeypatch.setattr(encoding, "_rows_to_columns", lambda e: fallbacks.append(e) or _rows_to_columns(e))
    _assert_same(encoding.rows_to_columns(entries), _rows_to_columns(entries))
    assert not fallbacks  # every row took the vectorised path


def test_rows_without_properties_and_a_single_row():
    entries = [(key, value) for key, value in _rows(random.Random(9), 200) if msgspec.msgpack.decode(value)[5] == []]
    _assert_same(rows_to_columns(entries), _rows_to_columns(entries))
    _assert_same(rows_to_columns(entries[:1]), _rows_to_columns(entries[:1]))


def test_events_encoded_by_the_codec_decode_alike():
    ids: dict[str, int] = {}
    intern = lambda text: ids.setdefault(text, len(ids) * 997)  # noqa: E731 - ids of every width

    def event(i: int) -> Event:
        if i % 2:
            return Event(kind=EventKind.PAGEVIEW, site_id=1, timestamp=1.0, name="pageview", visitor_id=2**64 - 3,
                         path=f"/p/{i}", country="DE", session_hint="abc" if i % 4 == 1 else "")
        return Event(kind=EventKind.CONVERSION, site_id=1, timestamp=2.0, name="Signup", visitor_id=7,
                     props={"plan": "pro", "seats": str(i)}, revenue=-1299 if i % 3 else 4999, currency="EUR",
                     engaged_ms=1500, scroll_depth=80)

    entries = [(pack_event_key(1, 1000 + i, i), encode_event(event(i), intern)) for i in range(50)]
    _assert_same(rows_to_columns(entries), _rows_to_columns(entries))


def test_rows_of_another_shape_fall_back_to_the_row_by_row_decoder(monkeypatch):
    fallbacks = []
    monkeypatch.setattr(encoding, "_rows_to_columns", lambda e: fallbacks.append(e) or _rows_to_columns(e))
    encode = msgspec.msgpack.Encoder().encode
    good = _rows(random.Random(4), 20)
    old = (0, encode((1, 5, 0, 0, [3] * (len(STRING_FIELDS) - 2), [], 0, 0, 0)))  # rows from before two fields existed
    mixed = [*good[:10], (pack_event_key(3, 1_700_000_000_100, 99), old[1]), *good[10:]]
    _assert_same(encoding.rows_to_columns(mixed), _rows_to_columns(mixed))
    assert encoding.rows_to_columns(mixed)["i." + STRING_FIELDS[-1]][10] == 0  # padded, as the plain decoder does
    assert len(fallbacks) == 2
    floats = [good[0], (good[1][0], encode((1, 5, 0, 0, [3] * len(STRING_FIELDS), [], 1.5, 0, 0)))]
    _assert_same(encoding.rows_to_columns(floats), _rows_to_columns(floats))  # not an integer: the plain verdict
    assert len(fallbacks) == 3
    too_wide = [(good[0][0], encode((1, 5, 0, 0, [3] * len(STRING_FIELDS), [], 0, 0, 40_000)))]
    with pytest.raises(OverflowError):  # scroll is int16: the plain decoder refuses it, and so do we
        encoding.rows_to_columns(too_wide)
    assert len(fallbacks) == 4


def test_rows_read_in_several_passes_join_up(monkeypatch):
    monkeypatch.setattr(logrows, "CHUNK_ROWS", 37)  # 400 rows: eleven passes, properties in several
    entries = _rows(random.Random(11), 400)
    _assert_same(rows_to_columns(entries), _rows_to_columns(entries))


@pytest.mark.parametrize("size", [1, 37, 399, 400, 1_000])
def test_a_day_decoded_chunk_by_chunk_equals_it_decoded_at_once(size):
    """What a day built from the log holds (``log_columns`` over the log's chunks): the same
    columns, properties' row numbers counted across chunks, and the last row's key."""
    entries = _rows(random.Random(size), 400)
    chunks = [entries[at : at + size] for at in range(0, len(entries), size)]
    columns, last_key = encoding.log_columns(chunks)
    _assert_same(columns, rows_to_columns(entries))
    assert last_key == entries[-1][0]
    empty, none = encoding.log_columns([])
    _assert_same(empty, rows_to_columns([]))
    assert none is None
