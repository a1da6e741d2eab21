"""An access log line's time: the fast path (strptime once per day and offset) and its edges."""

from __future__ import annotations

from datetime import datetime

import pytest

from appliance.imports import access_logs
from appliance.imports.access_logs import _day_and_offset, _log_time

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
