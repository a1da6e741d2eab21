"""The export and import jobs of a site over the JSON API (analysts and admins).

``GET /api/v1/sites/{domain}/transfers`` lists the jobs the dashboard's "Import & export"
page runs (:mod:`web.dashboard_transfers`), newest first, with their progress, and for a
finished export the path of its download, ``GET /api/v1/sites/{domain}/transfers/exports/{id}``.
The jobs are kept in LMDB (:mod:`appliance.definitions.job_records`), so the list outlives a
restart, and a job a restart interrupted is listed as failed.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get
from litestar.params import FromPath
from litestar.response import File

from web.auth import can_export_events, site_of
from web.dashboard_transfers import finished_export_file, transfer_registries
from web.dependencies import ApplianceDep


class TransferJobsController(Controller):
    path = "/api/v1/sites"
    tags = ["exports"]

    @get("/{domain:str}/transfers", guards=[can_export_events], sync_to_thread=True,
         summary="The site's export and import jobs, newest first, with progress (analysts, admins)")
    def list_jobs(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> dict[str, Any]:
        site = site_of(request)
        exports, imports = transfer_registries(request, appliance)
        export_jobs = []
        for job in exports.jobs(site.id):
            view = msgspec.to_builtins(job)
            view.pop("path")  # a server path: the download is the route below
            view["download"] = f"/api/v1/sites/{site.domain}/transfers/exports/{job.id}" if job.status == "complete" else None
            export_jobs.append(view)
        import_jobs = [msgspec.to_builtins(job) for job in imports.jobs(site.id)]
        return {"status": "success", "data": {"exports": export_jobs, "imports": import_jobs}}

    @get("/{domain:str}/transfers/exports/{job_id:int}", guards=[can_export_events], sync_to_thread=True,
         summary="Download a finished export job's file (analysts, admins)")
    def download_export(self, request: Request, appliance: ApplianceDep, domain: FromPath[str],
                        job_id: FromPath[int]) -> File:
        return finished_export_file(request, appliance, job_id)


TRANSFER_JOB_CONTROLLERS = [TransferJobsController]
