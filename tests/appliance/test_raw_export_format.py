"""The raw event export's fast column renderer writes exactly what encoding one interchange
``Line`` per event writes (msgspec for NDJSON, :mod:`csv` for CSV), for awkward values too:
formula-looking names, quotes and commas, properties, revenue, sessions, hashed user ids."""

from __future__ import annotations

import csv
import io
import json
import random
import time
from datetime import date, timedelta

import msgspec

from appliance.cli.demo import fill_demo_site
from appliance.events.codec import STRING_FIELDS
from appliance.events.interchange import (
    COLUMNS,
    Line,
    check_line,
    csv_row,
    encoder,
    event_of,
    line_of,
)
from appliance.exports.raw_events import RawEvents
from appliance.models import Event, EventKind
from appliance.runtime.jobs import compact_closed_days


def test_fast_rendering_equals_line_encoding(make_appliance):
    appliance = make_appliance()
    site = appliance.sites.add("format.example")
    now = time.time() - 120
    fill_demo_site(appliance, site, days=2, visits_per_day=20, seed=11, now=now - 60)  # all before ours
    appliance.record_sync([
        Event(kind=EventKind.CONVERSION, site_id=site.id, timestamp=now, name="=HYPERLINK(\"x\")", visitor_id=2**64 - 5,
              user_hashed=True, session_hint="checkout-42", hostname="format.example", path='/a,"b"\\c',
              props={"plan": "+pro", "note": "line\nbreak, \"quoted\""}, revenue=1999, currency="EUR",
              country="DE", region="DE-BE"),
        Event(kind=EventKind.ENGAGEMENT, site_id=site.id, timestamp=now + 1, name="engagement", visitor_id=7,
              hostname="format.example", path="/", engaged_ms=1234, scroll_depth=75, referrer="'quoted"),
    ])
    first, last = date.today() - timedelta(days=3), date.today() + timedelta(days=1)
    raw = RawEvents(appliance.stats.scans, appliance.strings)
    stored = list(appliance.events(site, 0, 2**40))
    lines = [line_of(key.hex(), event) for key, event in stored]
    expected_ndjson = b"".join(encoder.encode(line) + b"\n" for line in lines)
    ndjson = b"".join(raw.stream(site, first, last))
    assert ndjson == expected_ndjson
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(csv_row(line) for line in lines)
    assert b"".join(raw.stream(site, first, last, fmt="csv")) == out.getvalue().encode()
    last_line = json.loads(ndjson.splitlines()[-1])
    assert last_line["kind"] == "engagement" and last_line["engaged_ms"] == 1234


def test_column_rendering_equals_line_encoding_across_chunks(make_appliance):
    """Thousands of events over more than one chunk and block, every optional field present on
    some rows and absent on others (so columns that are empty in one chunk and not in another,
    negative revenue, 64-bit visitor and session hashes): the bytes still equal the encoder's."""
    appliance = make_appliance()
    site = appliance.sites.add("columns.example")
    rng = random.Random(5)
    start = time.time() - 86400 * 2
    events = []
    for index in range(2500):
        late = index >= 1200  # the first chunk has no revenue, scroll, users or UTM tags
        events.append(Event(
            kind=rng.choice(list(EventKind)), site_id=site.id, timestamp=start + index * 30,
            name=rng.choice(["pageview", "Signup", "-minus", "with,comma"]), visitor_id=rng.randrange(1, 2**64),
            session_hint=f"s{rng.randrange(50)}" if rng.random() < 0.3 else "",
            user_hashed=late and rng.random() < 0.2, path=rng.choice(["/", "/a", '/q"uote', "/x,y", "@home"]),
            referrer=rng.choice(["", "https://ref.example/"]), utm_campaign="spring" if late and index % 7 == 0 else "",
            props={"k": str(index)} if index % 11 == 0 else {}, revenue=rng.choice([0, 1999, -500]) if late else 0,
            currency="USD", engaged_ms=rng.choice([0, 0, 12_345]), scroll_depth=rng.choice([0, 40]) if late else 0,
            country=rng.choice(["", "DE", "US"]), browser=rng.choice(["", "Firefox"]),
        ))
    appliance.record_sync(events)
    assert compact_closed_days(appliance)["days"] >= 1  # stored column blocks, and today's log rows
    first, last = date.today() - timedelta(days=4), date.today() + timedelta(days=1)
    raw = RawEvents(appliance.stats.scans, appliance.strings)
    lines = [line_of(key.hex(), event) for key, event in appliance.events(site, 0, 2**40)]
    assert len(lines) == 2500
    assert b"".join(raw.stream(site, first, last)) == b"".join(encoder.encode(line) + b"\n" for line in lines)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows(csv_row(line) for line in lines)
    assert b"".join(raw.stream(site, first, last, fmt="csv")) == out.getvalue().encode()


def test_event_of_carries_every_string_field():
    """``event_of`` names the string fields one by one: each of them, and every other field,
    comes back as the line has it, and the check alone gives the same kind and ids."""
    texts = {name: f"{name}-{index}" for index, name in enumerate(STRING_FIELDS)}
    line = Line(v=1, t=1_760_000_000_250, kind="conversion", visitor="00000000000000ff", session="0000000000000abc",
                user=True, props={"plan": "pro"}, revenue=1900, engaged_ms=30, scroll_depth=75, **texts)
    event = event_of(line, 7)
    assert {name: getattr(event, name) for name in STRING_FIELDS} == texts
    assert (event.kind, event.site_id, event.timestamp, event.visitor_id, event.user_hashed) == (
        EventKind.CONVERSION, 7, 1_760_000_000.25, 0xFF, True)
    assert (event.session_hint, event.props, event.revenue, event.engaged_ms, event.scroll_depth) == (
        "0000000000000abc", {"plan": "pro"}, 1900, 30, 75)
    assert check_line(line) == (EventKind.CONVERSION, 0xFF, 0xABC)
    assert line_of("00", event) == msgspec.structs.replace(line, id="00")  # and back
