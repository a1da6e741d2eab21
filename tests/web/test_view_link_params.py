"""The dashboard view's links (web/views.py ``View.params``) without copying the view per link.

``params`` used to build each link from ``dataclasses.replace(view, **changes)``; it now
applies the changes field by field and works the view's own parameters out once (a page
draws a hundred links or more; issue 17). These tests hold it to the replace-based
reference for every kind of change the templates make, on plain and site views.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import date
from urllib.parse import urlencode

import pytest

from appliance.models import Site
from tests.web.test_charts import Params
from web.dashboard_views import SiteView
from web.views import TABS, View, default_interval, parse_view

SITE = Site(id=7, domain="shop.example")
TODAY = date(2026, 3, 15)


def reference_params(view: View, **changes) -> list[tuple[str, str]]:
    """``View.params`` as it was: a copy of the view with the changes, tabs merged."""
    changed = replace(view, **{k: v for k, v in changes.items() if k != "tabs"})
    tabs = {**view.tabs, **changes.get("tabs", {})}
    out: list[tuple[str, str]] = [("period", changed.period)]
    if changed.period == "custom":
        out += [("from", changed.date_from.isoformat()), ("to", changed.date_to.isoformat())]
    if changed.compare != "previous_period":
        out.append(("compare", changed.compare))
    if changed.interval != default_interval(changed.days):
        out.append(("interval", changed.interval))
    if changed.metric != "visitors":
        out.append(("metric", changed.metric))
    out += [("filter", f"{dimension}:{value}") for dimension, value in changed.filters]
    out += [(widget, tab) for widget, tab in sorted(tabs.items()) if tab and tab != TABS[widget][0]]
    return out


VIEWS = [
    [("period", "day")],
    [("period", "30d"), ("compare", "off"), ("metric", "pageviews"), ("sources", "utm_campaign")],
    [("period", "custom"), ("from", "2026-01-01"), ("to", "2026-03-01"), ("interval", "week"),
     ("filter", "source:Google"), ("filter", "page:/a b&c"), ("devices", "os"), ("pages", "exit")],
    [("period", "12mo"), ("compare", "year_over_year"), ("interval", "month"), ("locations", "region")],
]
CHANGES = [
    {},
    {"metric": "visits"},
    {"interval": "hour"},
    {"compare": "off"},
    {"period": "7d", "date_from": date(2026, 3, 9), "date_to": TODAY, "interval": "day"},
    {"period": "custom", "date_from": date(2025, 1, 1), "date_to": date(2025, 12, 31)},
    {"filters": ()},
    {"filters": (("country", "DE"), ("source", "Bing"))},
    {"tabs": {"sources": "referrer"}},
    {"tabs": {"sources": "channel", "devices": "screen"}},
]


@pytest.mark.parametrize(("pairs", "changes"), list(itertools.product(VIEWS, CHANGES)))
def test_links_equal_the_copy_based_reference(pairs, changes):
    view = parse_view(SITE, Params(pairs), TODAY)
    assert view.params(**changes) == reference_params(view, **changes)
    assert view.qs(**changes) == urlencode(reference_params(view, **changes))
    # asking twice, and the unchanged view in between, gives the same links
    assert view.params() == reference_params(view)
    assert view.params(**changes) == reference_params(view, **changes)


def test_site_views_keep_segment_and_shared_link_and_the_helpers_agree():
    base = parse_view(SITE, Params(VIEWS[2]), TODAY)
    fields = {name: getattr(base, name) for name in View.__dataclass_fields__}
    view = SiteView(**fields, segment=4, segment_name="Buyers", auth="ffs_token")
    assert view.params() == [*reference_params(base), ("segment", "4"), ("auth", "ffs_token")]
    assert view.params(segment=None, metric="visits") == [*reference_params(base, metric="visits"), ("auth", "ffs_token")]
    first = view.url()
    assert view.url() == first and view.qs() in first  # the kept query string is the same one
    replaced = view.with_filter("source", "Bing")
    assert "filter=source%3ABing" in replaced and "Google" not in replaced and "segment=4" in replaced
    removed = view.without_filter("page", "/a b&c")
    assert "page%3A" not in removed and "filter=source%3AGoogle" in removed


def test_an_unknown_change_is_refused_as_a_copy_would_refuse_it():
    view = parse_view(SITE, Params(VIEWS[0]), TODAY)
    with pytest.raises(TypeError):
        view.params(colour="red")
