"""Events and drafts stay out of the garbage collector's scans.

An :class:`~appliance.models.Event` holds texts, numbers and a ``dict[str, str]`` of
properties, a :class:`~appliance.ingest.drafts.Draft` texts, a shared parsed URL and a dict
of field values: neither can take part in a reference cycle, so both are declared
``gc=False`` and reference counting alone frees them. A batch holds thousands of each; while
tracked, every young collection walked them and counted their allocations toward the next
(``scripts/bench_batch.py``: the collector's CPU per event while ingesting). Counting is
unchanged: the ingest tests and the benchmark's digests compare the figures.
"""

from __future__ import annotations

import gc
import time

from appliance.ingest.drafts import draft_from_collect_body
from appliance.models import CollectBody, Event, EventKind, RequestContext

AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


def test_events_and_drafts_through_the_pipeline_are_not_tracked(appliance):
    appliance.sites.add("untracked.example", timezone="UTC")
    body = CollectBody(k="event", u="https://untracked.example/pricing?utm_source=news", n="Signup",
                       p={"plan": "pro"}, r="https://news.example/item")
    draft = draft_from_collect_body(body)
    context = RequestContext(client_ip="198.51.100.20", user_agent=AGENT, received_at=time.time())
    event = appliance.pipeline.process(draft, context)

    assert not gc.is_tracked(draft)
    assert not gc.is_tracked(event)
    assert event.props == {"plan": "pro"} and event.visitor_id  # enriched and identified as before
    appliance.record_sync([event])  # the visit table and the counters take it as before


def test_an_event_frees_by_reference_counting_alone():
    event = Event(kind=EventKind.CUSTOM, site_id=1, timestamp=1.0, name="Signup", props={"plan": "free"})
    assert not gc.is_tracked(event)
    assert not gc.is_tracked(event.props)  # a dict of texts: untracked by CPython itself
