"""An access log line's time: the fast path (strptime once per day and offset) and its edges."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.imports import access_logs
from appliance.imports.access_logs import _day_and_offset, _log_time
from appliance.imports.sources import ImportFailure, SourceLine

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _strptime(text: str) -> float:
    return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp()


@pytest.mark.parametrize("offset", ["+0000", "+0200", "-0530", "+1400", "-1200"])
def test_every_month_and_offset_as_strptime_reads_it(offset):
    for number, month in enumerate(MONTHS, 1):
        for clock in ("00:00:00", "09:05:07", "13:55:36", "23:59:59"):
            text = f"{min(28, number * 2):02d}/{month}/2025:{clock} {offset}"
            assert _log_time(text) == _strptime(text), text


def test_a_day_and_offset_is_parsed_once_for_all_its_lines(monkeypatch):
    calls = []

    class Counting(datetime):
        @classmethod
        def strptime(cls, text, fmt):
            calls.append(text)
            return datetime.strptime(text, fmt)

    monkeypatch.setattr(access_logs, "datetime", Counting)
    _day_and_offset.cache_clear()
    times = [_log_time(f"10/Oct/2025:{hour:02d}:{minute:02d}:36 +0200") for hour in range(24) for minute in range(0, 60, 7)]
    assert calls == ["10/Oct/2025 +0200"]  # one parse of the day: the lines' clocks are added
    assert times == sorted(times) and times[0] == _strptime("10/Oct/2025:00:00:36 +0200")


@pytest.mark.parametrize("text", [
    "10/Oct/2025:24:00:00 +0000",  # no hour 24
    "10/Oct/2025:12:60:00 +0000",
    "10/Oct/2025:12:00:60 +0000",  # a datetime has no leap second; strptime refuses it too
    "32/Oct/2025:13:55:36 +0200",
    "30/Feb/2025:12:00:00 +0000",
    "10/Okt/2025:13:55:36 +0200",
    "10/Oct/2025:1a:55:36 +0200",
    "10/Oct/2025:+1:55:36 +0200",
    "10/Oct/2025 13:55:36 +0200",
])
def test_a_time_strptime_refuses_is_refused(text):
    with pytest.raises(ValueError):
        _log_time(text)


# -- the validation pass's check ------------------------------------------------------------
# each part of a line: shapes the parse takes, and shapes it fails or skips
_PARTS = {
    "ip": (["203.0.113.9", "::1", "-", "2001:db8::1"], [""]),
    "user": (["-", "alice"], [""]),
    "day": (["01", "10", "28", "31"], ["32", "1", "00", "30"]),
    "month": (list(MONTHS), ["Foo", "oct", "OCT"]),
    "year": (["2025", "1999"], ["25", "2o25"]),
    "hour": (["00", "13", "23"], ["24", "7", "1x"]),
    "minute": (["00", "59"], ["60", "5"]),
    "second": (["00", "36", "59"], ["60", "5x"]),
    "offset": (["+0200", "-0530", "+0000"], ["+2500", "0200", "+02"]),
    "request": (["GET / HTTP/1.1", "GET /a?b=c HTTP/1.0", "POST /x HTTP/1.1", "GET"], ["", 'GET /\\"q\\" HTTP/1.1']),
    "status": (["200", "304", "404"], ["2000", "20"]),
    "size": (["512", "-"], [""]),
    "tail": (["", ' "-" "-"', ' "https://example.org/" "Mozilla/5.0"'], [' "a\\"b" "c"', ' "x"', " x"]),
}


@st.composite
def _log_lines(draw) -> bytes:
    """A log line with at most one part of an odd shape (any part: every odd shape is tried
    often), or now and then no log line at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([b"", b"   ", b"not a log line", b"\xff\xfe caf\xe9", b'{"ts": 1.5, "request": {}}',
                                     b'{"ts": "x"}', b"{"]))
    odd = draw(st.sampled_from([None, None, None, *_PARTS]))
    part = {name: draw(st.sampled_from(shapes[name == odd])) for name, shapes in _PARTS.items()}
    when = f'{part["day"]}/{part["month"]}/{part["year"]}:{part["hour"]}:{part["minute"]}:{part["second"]} {part["offset"]}'
    text = f'{part["ip"]} - {part["user"]} [{when}] "{part["request"]}" {part["status"]} {part["size"]}{part["tail"]}'
    return text.encode("utf-8")


def _outcome(read, data: list[bytes]):
    reader = access_logs.AccessLogReader("example.org")
    lines = (SourceLine("access.log", number, line) for number, line in enumerate(data, 1))
    try:
        return [(line.number, item) for line, item in getattr(reader, read)(lines, 1)]
    except ImportFailure as failure:
        return str(failure)


@settings(max_examples=400, deadline=None)
@given(st.lists(_log_lines(), min_size=1, max_size=3))
def test_the_check_fails_where_the_parse_fails_and_counts_alike(data):
    """The validation pass's check: the same failure (file, line, message) as the parse, or
    as many items; an item it leaves out (None) is one the parse reads as a hit or a skip."""
    checked, parsed = _outcome("check", data), _outcome("parse", data)
    if isinstance(parsed, str):
        assert checked == parsed
        return
    assert [number for number, _ in checked] == [number for number, _ in parsed]
    for (_, seen), (_, read) in zip(checked, parsed, strict=True):
        assert seen is None or seen == read
