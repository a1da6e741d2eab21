"""The importer: a file of one kind into one site, checked whole first, idempotent, with progress.

:meth:`Importer.run` reads the file twice. The *validation pass* parses every line (a reader
per kind: :mod:`~appliance.imports.footfall`, :mod:`~appliance.imports.access_logs`,
:mod:`~appliance.imports.tools`) and hashes the content; a truncated archive, a malformed line
or a wrong column set stops the import there with an :class:`ImportFailure` naming the file
and line, before anything is written. The *import pass* parses again and hands the items, a
chunk at a time, to the ingest path: raw hits through the pipeline's own steps (resolve the
site, the ``filter_event`` hooks — bots —, the ``enrich_event`` hooks, a visitor id, see
:mod:`~appliance.imports.visitor_ids`), finished events (Footfall's export) as they are; then
:meth:`Appliance.record_sync` commits them and runs the aggregation step, the one that counts
live traffic (visits, counters, sketches, goals). There is no second counting path.

Idempotency: the SHA-256 of the file's (decompressed) content and of each chunk's lines are
recorded per site in LMDB once they are imported. A file seen before is not imported again
(the report says so); after an interrupted import, the chunks already written are skipped and
the rest imported, so nothing is counted twice. A dry run does both passes without writing
and reports what would be imported and what would be skipped, by reason.

A finished import asks the job runner to compact the closed days it wrote into column blocks
(:mod:`appliance.runtime.compaction_queue`), so the first filtered query over them reads
blocks instead of building them from the log.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import msgspec

from appliance.errors import DomainError
from appliance.imports.access_logs import STATIC_PATTERNS, AccessLogReader
from appliance.imports.footfall import FootfallReader
from appliance.imports.hits import Hit, Reader
from appliance.imports.plausible import PlausibleImport
from appliance.imports.sources import SourceLine, read_lines
from appliance.imports.tools import GoatCounterReader, UmamiReader
from appliance.imports.visitor_ids import ImportVisitors
from appliance.ingest.drafts import Draft, Dropped, InvalidInput, draft_from_collect_body
from appliance.models import CollectBody, Event, EventKind, RequestContext, Site

KINDS = ("footfall", "access-log", "umami", "goatcounter", "plausible")
CHUNK_ITEMS = 5000
_DRAFTS_KEPT = 4096  # distinct (page, referrer, event) drafts an import keeps at once
_RECORD_KIND = "imported"
_WIRE_NAMES = {"u": "page URL", "n": "event name", "r": "referrer", "p": "properties"}
_COLLECT_KIND = {EventKind.PAGEVIEW: "pageview", EventKind.CUSTOM: "event", EventKind.CONVERSION: "conversion"}


class ImportReport(msgspec.Struct, kw_only=True):
    """What an import did, or (``dry_run``) would do."""

    kind: str
    file: str
    site: str
    dry_run: bool
    lines: int = 0
    events: int = 0
    skipped: dict[str, int] = {}
    already_imported: bool = False
    chunks_already_imported: int = 0
    first_event: str = ""
    last_event: str = ""
    seconds: float = 0.0
    events_per_second: int = 0
    # aggregate imports (plausible): per table, rows, days, first_day and last_day
    tables: dict[str, dict[str, object]] = {}


def make_reader(kind: str, site: Site, static_patterns: tuple[str, ...] | None = None) -> Reader:
    if kind == "footfall":
        return FootfallReader()
    if kind == "access-log":
        return AccessLogReader(site.domain, STATIC_PATTERNS if static_patterns is None else static_patterns)
    if kind == "umami":
        return UmamiReader(site.domain)
    if kind == "goatcounter":
        return GoatCounterReader(site.domain)
    raise DomainError("kind", f"must be one of {', '.join(KINDS)}")


def _iso(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds") if timestamp is not None else ""


class Importer:
    """Runs imports on an open appliance's parts (see the module docstring)."""

    def __init__(
        self, *, pipeline, store, records, record: Callable[[list[Event]], object], visit_timeout_seconds: int,
        clock: Callable[[], float] = time.time, imported=None,
        compact: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._compact = compact  # (site id, first UTC day, last UTC day): the job runner compacts them soon
        self._store = store
        self._records = records
        self._record = record
        self._timeout = visit_timeout_seconds
        self._clock = clock
        self._imported = imported
        self._drafts: dict[tuple, Draft | str] = {}  # per run: see _draft

    @classmethod
    def of(cls, appliance) -> Importer:
        """The importer of an open :class:`~appliance.runtime.appliance.Appliance`."""
        return cls(
            pipeline=appliance.pipeline, store=appliance.store, records=appliance.records,
            record=appliance.record_sync, visit_timeout_seconds=appliance.settings.sites.visit_timeout_minutes * 60,
            imported=appliance.imported, compact=appliance.jobs.compactions.request,
        )

    # -- idempotency records --------------------------------------------------------------
    def _seen(self, site: Site, what: str, digest: str) -> bool:
        return self._records.get(_RECORD_KIND, f"{site.id:010d}/{what}/{digest}") is not None

    def _remember(self, site: Site, what: str, digest: str, value: bytes = b"1") -> None:
        self._store.write(lambda txn: self._records.put(txn, _RECORD_KIND, f"{site.id:010d}/{what}/{digest}", value))

    # -- the run --------------------------------------------------------------------------
    def run(
        self, kind: str, path: str, site: Site, *, dry_run: bool = False,
        static_patterns: tuple[str, ...] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ImportReport:
        """Import ``path`` (of ``kind``) into ``site``; ``progress(items_done, items_total)``."""
        began = time.monotonic()
        name = str(path).rsplit("/", 1)[-1]
        report = ImportReport(kind=kind, file=name, site=site.domain, dry_run=dry_run)
        if kind == "plausible":  # daily aggregates, not events: stored apart
            return PlausibleImport(store=self._store, records=self._records, imported=self._imported).run(
                path, site, report, dry_run=dry_run, progress=progress)
        reader = make_reader(kind, site, static_patterns)
        self._drafts.clear()
        total, digest = self._validate(reader, path, site)
        if self._seen(site, "file", digest):
            report.already_imported = True
            report.seconds = round(time.monotonic() - began, 3)
            return report
        skipped: Counter[str] = Counter()
        visitors = ImportVisitors(self._store, self._records, self._timeout)
        now = self._clock()
        done = 0
        first = last = None
        for chunk in _chunks(reader.parse(read_lines(path), site.id)):
            chunk_digest = hashlib.sha256(b"\n".join(line.data for line, _ in chunk)).hexdigest()
            report.lines += len(chunk)
            if self._seen(site, "chunk", chunk_digest):
                report.chunks_already_imported += 1
                done += len(chunk)
                continue
            events = []
            for _, item in chunk:
                if item is None:
                    continue
                if isinstance(item, str):
                    skipped[item] += 1
                    continue
                event = item if isinstance(item, Event) else self._through_pipeline(item, site, visitors, now)
                if isinstance(event, str):
                    skipped[event] += 1
                    continue
                if isinstance(item, Event) and (reason := self._out_of_range(event, site, now)):
                    skipped[reason] += 1
                    continue
                events.append(event)
            events.sort(key=lambda event: event.timestamp)
            if events:
                first = events[0].timestamp if first is None else min(first, events[0].timestamp)
                last = events[-1].timestamp if last is None else max(last, events[-1].timestamp)
            if not dry_run:
                if events:
                    self._record(events)
                self._remember(site, "chunk", chunk_digest)
            report.events += len(events)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
        report.skipped = dict(skipped)
        report.first_event, report.last_event = _iso(first), _iso(last)
        if not dry_run:
            summary = msgspec.json.encode({"file": name, "kind": kind, "events": report.events, "at": now})
            self._remember(site, "file", digest, summary)
            if self._compact is not None and first is not None and last is not None:
                # the closed days just written: compacted by the job runner, not by the first query
                self._compact(site.id, int(first // 86400), int(last // 86400))
        elapsed = time.monotonic() - began
        report.seconds = round(elapsed, 3)
        report.events_per_second = int(report.events / elapsed) if elapsed > 0 else 0
        return report

    def _validate(self, reader: Reader, path: str, site: Site) -> tuple[int, str]:
        """Parse everything once (raising :class:`ImportFailure` on the first bad line);
        returns how many items there are and the content's SHA-256."""
        digest = hashlib.sha256()
        check = getattr(reader, "check", reader.parse)  # (see Reader)
        count = sum(1 for _ in check(_hashed(read_lines(path), digest), site.id))
        return count, digest.hexdigest()

    def _out_of_range(self, event: Event, site: Site, now: float) -> str | None:
        if event.timestamp < now - site.retention_days * 86400:
            return "older than the site's retention"
        if event.timestamp > now + 60:
            return "in the future"
        return None

    def _draft(self, hit: Hit, site: Site) -> Draft | str:
        """The hit's draft, or why it is skipped: the same for every hit of one page, referrer
        and event (most lines of a log), so kept per run (:attr:`_drafts`, bounded)."""
        key = (hit.kind, hit.url, hit.referrer, hit.name, tuple(hit.props.items()), hit.language)
        found = self._drafts.get(key)
        if found is not None:
            return found
        try:
            found = draft_from_collect_body(
                CollectBody(k=_COLLECT_KIND.get(hit.kind, "event"), s=site.domain, u=hit.url, r=hit.referrer or None,
                            n=hit.name, p=dict(hit.props), l=hit.language or None)
            )
            if self._pipeline.resolve_site(found).id != site.id:
                found = "another site"
        except InvalidInput as error:  # named as the file has it, not by the tracker's wire names
            found = f"invalid {_WIRE_NAMES.get(error.field or '', error.field)}: {error.message}"
        except Dropped as drop:
            found = str(drop.reason)
        if len(self._drafts) >= _DRAFTS_KEPT:
            self._drafts.clear()
        self._drafts[key] = found
        return found

    def _through_pipeline(self, hit: Hit, site: Site, visitors: ImportVisitors, now: float) -> Event | str:
        """A hit through the pipeline's steps (as :meth:`Pipeline.process`, but with the
        hit's own time and the import visitor ids); returns the event or a skip reason."""
        pipeline = self._pipeline
        draft = self._draft(hit, site)
        if isinstance(draft, str):
            return draft
        event = Event(
            kind=draft.kind, site_id=site.id, timestamp=hit.timestamp, name=draft.name,
            hostname=draft.page.hostname, path=draft.page.path, **draft.fields,
        )
        if reason := self._out_of_range(event, site, now):
            return reason
        identity = hit.client_ip or hit.visitor_key
        context = RequestContext(
            client_ip=hit.client_ip, user_agent=hit.user_agent, received_at=hit.timestamp,
            page_query=dict(draft.page.query) if draft.page.query else {},
        )
        try:
            pipeline.run_filters(event, context)
        except Dropped as drop:
            return str(drop.reason)
        event = pipeline.run_enrichers(event, context)
        given = {name: getattr(hit, name) for name in ("screen", "country", "region", "browser", "os", "device") if getattr(hit, name)}
        return msgspec.structs.replace(
            event, visitor_id=visitors.visitor_id(site.id, identity, hit.user_agent, hit.timestamp), **given
        )


def _hashed(lines: Iterator[SourceLine], digest) -> Iterator[SourceLine]:
    for line in lines:
        digest.update(line.data)
        digest.update(b"\n")
        yield line


def _chunks(items: Iterator[tuple[SourceLine, object]]) -> Iterator[list[tuple[SourceLine, object]]]:
    chunk: list[tuple[SourceLine, object]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= CHUNK_ITEMS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
