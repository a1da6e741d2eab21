"""The site view of the dashboard pages: :class:`~web.views.View` plus a segment and a shared link.

Everything the URL says stays in the URL: ``segment=ID`` views every widget through a saved
segment (as one more filter, the ``segment`` filter of :mod:`appliance.filters`), and a
shared-link visitor's ``auth=ffs_...`` rides along on every link the page draws, so the
period picker, the filters and the htmx widgets keep working without a login. ``base``
is the page the view's links lead back to (the dashboard, or a funnel report), so a period
chosen on a funnel report stays on that report.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import msgspec
from litestar import Request

from appliance.definitions.common import DefinitionError
from appliance.filters import make_filter
from appliance.runtime.appliance import Appliance
from web.auth import principal_of, site_of
from web.views import View, parse_view


@dataclass(frozen=True)
class SiteView(View):
    segment: int | None = None
    segment_name: str = ""
    auth: str = ""  # a shared link's token, carried on every link
    base: str = ""  # the path under the site that url() leads to by default

    @property
    def base_url(self) -> str:
        return f"/sites/{self.site.domain}{self.base}"

    def query(self, interval: str | None = None):
        query = super().query(interval)
        if self.segment is not None:
            segment = make_filter("is", "segment", [str(self.segment)])
            query = msgspec.structs.replace(query, filters=[*query.filters, segment])
        return query

    def params(self, **changes) -> list[tuple[str, str]]:
        segment = changes.pop("segment", self.segment)
        out = super().params(**changes)
        if segment is not None:
            out.append(("segment", str(segment)))
        if self.auth:
            out.append(("auth", self.auth))
        return out

    def url(self, path: str | None = None, **changes) -> str:
        return super().url(self.base if path is None else path, **changes)

    def at(self, base: str) -> SiteView:
        """The same view, with links leading to ``base`` (a path under the site)."""
        return replace(self, base=base)

    def link(self, path: str = "") -> str:
        """A plain link under the site (no view state), keeping a shared link's token."""
        url = f"/sites/{self.site.domain}{path}"
        return f"{url}?auth={self.auth}" if self.auth else url

    def with_segment(self, segment: int | None) -> str:
        return self.url(segment=segment)


def viewer_id(request: Request) -> int:
    """The caller's user id; -1 for shared links and public dashboards (site-wide segments only)."""
    principal = principal_of(request)
    return principal.user.id if principal is not None and principal.user is not None else -1


def parse_site_view(request: Request, appliance: Appliance, base: str = "") -> SiteView:
    """The view a dashboard request's URL describes; a segment the caller cannot see is dropped."""
    site = site_of(request)
    view = parse_view(site, request.query_params)
    principal = principal_of(request)
    auth = request.query_params.get("auth", "") if principal is not None and principal.via == "share" else ""
    segment, name = None, ""
    raw = request.query_params.get("segment", "")
    if raw.isdigit():
        segments = appliance.segments
        try:
            found = segments.get(site.id, int(raw), viewer_id(request))
        except DefinitionError:
            found = None
        if found is not None:
            segment, name = found.id, found.name
    fields = {field: getattr(view, field) for field in View.__dataclass_fields__}
    return SiteView(**fields, segment=segment, segment_name=name, auth=auth, base=base)
