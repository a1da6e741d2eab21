"""The first run of a site: until its first event arrives, ``/sites/{domain}`` opens on the
onboarding page (the tracking snippet with a copy button, and a check that waits for the
first event over the live view's stream) instead of an empty dashboard; shared links and
public visitors see a plain "no data yet" instead. ``/sites/{domain}/onboarding`` stays
reachable afterwards (linked from the site's settings) to check an installation again.

The pages themselves are routes of :class:`web.dashboard.SitesController`; this module holds
what they ask: whether a site has any event, and the snippet.
"""

from __future__ import annotations

from appliance.models import Site
from appliance.runtime.appliance import Appliance


def has_events(appliance: Appliance, site: Site) -> bool:
    """Whether ``site`` has stored any event (see :meth:`Appliance.has_events`), or has
    imported daily aggregates (a Plausible export) to show."""
    return appliance.has_events(site) or appliance.stats.has_imported(site)


def tracking_snippet(origin: str, domain: str, site: Site | None = None) -> str:
    """The ``<script>`` tag a site puts in its pages' ``<head>``; with the site, its privacy
    signals as the tracker's attributes (it then sends nothing for a visitor who opted out)."""
    signals = ""
    if site is not None:
        signals = ("" if site.honour_gpc else ' data-gpc="off"') + (' data-dnt="on"' if site.honour_dnt else "")
    return f'<script defer src="{origin}/js/footfall.js" data-site="{domain}"{signals}></script>'
