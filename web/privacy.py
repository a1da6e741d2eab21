"""Privacy tools on the web: a person's events (export, erasure) and the site's privacy notice.

``/api/v1/sites/{domain}/people/{user_id}`` is the admin API for the rights of a person whose
``user_id`` the site sends (GDPR access and erasure, CCPA): ``GET`` returns every stored event
of theirs, ``DELETE`` erases them and rebuilds the days they were in
(:mod:`appliance.operations.erasure`). Both are written to the audit log with the person's
keyed hash, never the id itself. The privacy notice (:mod:`appliance.operations.notice`) is
JSON at ``/api/v1/sites/{domain}/privacy-notice`` and a page at
``/sites/{domain}/privacy-notice`` with the Markdown to copy.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, delete, get
from litestar.params import FromPath
from litestar.response import Template
from litestar.status_codes import HTTP_200_OK

from appliance.operations.notice import PrivacyNotice, privacy_notice
from appliance.runtime.appliance import Appliance
from web.api_accounts import audit
from web.auth import can_manage_site, can_view_site, dashboard_site_member, site_of
from web.dependencies import ApplianceDep
from web.pages import page


def _notice(appliance: Appliance, request: Request) -> PrivacyNotice:
    return privacy_notice(site_of(request), geo=appliance.plugin_manager.has_plugin("geo"))


class PeopleController(Controller):
    path = "/api/v1/sites/{domain:str}/people"
    tags = ["privacy"]
    guards = [can_manage_site]

    @get("/{user_id:str}", summary="Every stored event of one user_id (GDPR access; admin only)", sync_to_thread=True)
    def export_person(
        self, request: Request, appliance: ApplianceDep, domain: FromPath[str], user_id: FromPath[str]
    ) -> dict[str, Any]:
        site = site_of(request)
        personal = appliance.personal
        events = personal.export(site, user_id)
        audit(appliance, request, "gdpr.export", site.domain, events=len(events),
              visitor=f"{personal.visitor_of(site, user_id):016x}")
        rows = [{"event_id": f"evt_{key}", **msgspec.to_builtins(event)} for key, event in events]
        return {"status": "success", "data": {"count": len(events), "events": rows}}

    @delete("/{user_id:str}", status_code=HTTP_200_OK, sync_to_thread=True,
            summary="Erase every event of one user_id and rebuild the days they were in (GDPR erasure; admin only)")
    def erase_person(
        self, request: Request, appliance: ApplianceDep, domain: FromPath[str], user_id: FromPath[str]
    ) -> dict[str, Any]:
        site = site_of(request)
        personal = appliance.personal
        erasure = personal.erase(site, user_id)
        audit(appliance, request, "gdpr.delete", site.domain, events=erasure.events, days=erasure.days,
              visitor=f"{personal.visitor_of(site, user_id):016x}")
        return {"status": "success", "data": msgspec.to_builtins(erasure)}


class PrivacyNoticeController(Controller):
    path = "/api/v1/sites/{domain:str}/privacy-notice"
    tags = ["privacy"]
    guards = [can_view_site]

    @get("/", summary="The site's generated privacy notice (sections and Markdown)", sync_to_thread=True)
    def notice(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> dict[str, Any]:
        return {"status": "success", "data": msgspec.to_builtins(_notice(appliance, request))}


class PrivacyNoticePage(Controller):
    path = "/sites/{domain:str}/privacy-notice"
    include_in_schema = False

    @get("/", guards=[dashboard_site_member], sync_to_thread=True,
         summary="The site's privacy notice to paste into a policy (signed-in users)")
    def notice_page(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return page(request, "privacy_notice.html", site=site_of(request), notice=_notice(appliance, request))


PRIVACY_CONTROLLERS = [PeopleController, PrivacyNoticeController]
PRIVACY_PAGES = [PrivacyNoticePage]
