"""The dashboard's "Import & export" page of a site: raw event exports and imports as
background jobs, with progress and a download link.

Analysts and admins export (:mod:`appliance.exports.jobs`); admins also import an uploaded
file (:mod:`appliance.imports.jobs`, the CLI's importer). The job list is an htmx partial that
polls itself while a job runs. The two job registries are made once per app, on first use,
beside the appliance (files under ``<data dir>/transfers``).
"""

from __future__ import annotations

import shutil
import threading
from datetime import date, timedelta
from pathlib import Path

from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import File, Redirect, Template

from appliance.accounts.permissions import Permission
from appliance.errors import DomainError
from appliance.exports.jobs import ExportJobs
from appliance.exports.raw_events import RawEvents
from appliance.filters import parse_filters
from appliance.imports.jobs import ImportJobs
from appliance.imports.runner import KINDS, Importer
from appliance.periods import local_today
from appliance.runtime.appliance import Appliance
from web.auth import Guard, principal_of, site_of
from web.dependencies import ApplianceDep, FormDep
from web.pages import page as _page

dashboard_site_exporter = Guard(Permission.EXPORT_EVENTS, site=True, dashboard=True)
dashboard_site_importer = Guard(Permission.MANAGE_SITES, site=True, dashboard=True)
MAX_UPLOAD_BYTES = 2 << 30
_lock = threading.Lock()


def finished_export_file(request: Request, appliance: Appliance, job_id: int) -> File:
    """A finished export job's file of the request's site, as a download (404 otherwise);
    the dashboard's and the JSON API's download routes both answer with it."""
    exports, _ = transfer_registries(request, appliance)
    job = exports.finished(site_of(request).id, job_id)
    if job is None:
        raise NotFoundException(f"no finished export {job_id}")
    media = "text/csv" if job.path.endswith(".csv") else "application/x-ndjson"
    return File(path=job.path, filename=job.filename, media_type=media)


def transfer_registries(request: Request, appliance: Appliance) -> tuple[ExportJobs, ImportJobs]:
    """The app's export and import job registries (also read by :mod:`web.api_transfers`)."""
    state = request.app.state
    following = appliance.following  # a standby lists the primary's jobs as copied; once promoted, its own
    with _lock:
        found = state.get("transfer_jobs")
        if found is None or found[0] is not appliance or found[3] != following:
            directory = Path(appliance.settings.data_dir) / "transfers"
            exports = ExportJobs(RawEvents(appliance.stats.scans, appliance.strings), directory, appliance.store,
                                 appliance.records, read_only=following)
            imports = ImportJobs(Importer.of(appliance), directory, appliance.store, appliance.records,
                                 read_only=following)
            found = state["transfer_jobs"] = (appliance, exports, imports, following)
    return found[1], found[2]


def _day(text: str, field: str, default: date) -> date:
    if not text:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DomainError(field, "not a date (YYYY-MM-DD)") from None


class TransfersController(Controller):
    path = "/sites"
    include_in_schema = False

    @get("/{domain:str}/transfers", guards=[dashboard_site_exporter],
         summary="Import & export: raw event exports and imports with progress (analysts, admins)", sync_to_thread=True)
    def transfers(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _transfers_page(request, appliance)

    @get("/{domain:str}/transfers/jobs", guards=[dashboard_site_exporter],
         summary="The site's export and import jobs (an htmx partial)", sync_to_thread=True)
    def transfer_jobs(self, request: Request, appliance: ApplianceDep, domain: FromPath[str]) -> Template:
        return _page(request, "_transfer_jobs.html", **_job_lists(request, appliance))

    @post("/{domain:str}/exports", guards=[dashboard_site_exporter], summary="Start a raw event export job",
          sync_to_thread=True)
    def start_export(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        site = site_of(request)
        exports, _ = transfer_registries(request, appliance)
        today = local_today(site.timezone)
        try:
            last = _day(str(form.get("end_date", "")), "end_date", today)
            first = _day(str(form.get("start_date", "")), "start_date", last - timedelta(days=29))
            filters = parse_filters(str(form.get("filters", "")) or None)
            exports.start(site, first, last, str(form.get("format", "ndjson")), filters)
        except DomainError as error:
            return _transfers_page(request, appliance, error=f"{error.field}: {error.message}", status=422)
        return Redirect(f"/sites/{site.domain}/transfers", status_code=303)

    @get("/{domain:str}/exports/{job_id:int}", guards=[dashboard_site_exporter],
         summary="Download a finished export", sync_to_thread=True)
    def download_export(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], job_id: FromPath[int]) -> File:
        return finished_export_file(request, appliance, job_id)

    @post("/{domain:str}/imports", guards=[dashboard_site_importer], summary="Upload a file and import it (admin)",
          sync_to_thread=True, request_max_body_size=MAX_UPLOAD_BYTES)
    def start_import(self, request: Request, appliance: ApplianceDep, domain: FromPath[str], form: FormDep) -> Response:
        site = site_of(request)
        _, imports = transfer_registries(request, appliance)
        upload = form.get("file")
        kind = str(form.get("kind", ""))
        if not isinstance(upload, UploadFile) or not upload.filename:
            return _transfers_page(request, appliance, error="file: choose a file to import", status=422)
        if kind not in KINDS:
            return _transfers_page(request, appliance, error=f"kind: must be one of {', '.join(KINDS)}", status=422)
        target = imports.upload_path(upload.filename)
        with open(target, "wb") as out:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, out)
        imports.start(site, kind, target, Path(upload.filename).name, dry_run=bool(form.get("dry_run")))
        appliance.audit.record(principal_of(request).name, "site.import", site.domain, kind=kind,
                               file=Path(upload.filename).name, dry_run=bool(form.get("dry_run")), via="dashboard")
        return Redirect(f"/sites/{site.domain}/transfers", status_code=303)


def _job_lists(request: Request, appliance: Appliance) -> dict:
    site = site_of(request)
    exports, imports = transfer_registries(request, appliance)
    export_jobs, import_jobs = exports.jobs(site.id), imports.jobs(site.id)
    running = any(job.status == "running" for job in [*export_jobs, *import_jobs])
    return {"site": site, "export_jobs": export_jobs, "import_jobs": import_jobs, "running": running}


def _transfers_page(request: Request, appliance: Appliance, error: str = "", status: int = 200) -> Template:
    site = site_of(request)
    today = local_today(site.timezone)
    return _page(
        request, "transfers.html", status=status, error=error, kinds=KINDS,
        default_start=(today - timedelta(days=29)).isoformat(), default_end=today.isoformat(),
        **_job_lists(request, appliance),
    )


TRANSFER_PAGES = [TransfersController]
