"""The ingest pipeline: a readable list of named steps from a request body to an Event.

``build`` (validate fields, parse URLs) → ``resolve_site`` → ``visitor_context`` (a server-side
event's visitor user agent and IP in place of the request's) → ``check_time`` →
``filter_event`` hooks → ``enrich_event`` hooks → ``identify_visitor``. A step either returns
the (possibly enriched) event or raises :class:`Dropped` with a typed :class:`DropReason`,
or :class:`InvalidInput` naming the field and the problem. Drops are counted per reason.
Nothing here does I/O or waits: the request hands the finished events to the writer.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import msgspec
import pluggy

from appliance.hooks.manager import hot_path_calls
from appliance.ingest.clients import is_script_client
from appliance.ingest.drafts import Draft, Dropped, InvalidInput
from appliance.ingest.visitors import VisitorHasher
from appliance.ingest.visits import VisitTable
from appliance.models import (
    DropReason,
    Event,
    RequestContext,
    Site,
)
from appliance.sites import SiteRegistry, hostname_allowed


class Pipeline:
    """Runs drafts through the named steps. One per appliance; thread-safe counters."""

    def __init__(
        self,
        *,
        sites: SiteRegistry,
        hooks: pluggy.HookRelay,
        visitors: VisitorHasher,
        visits: VisitTable,
        clock_skew_seconds: int,
    ) -> None:
        self._sites = sites
        self._hooks = hooks
        self._visitors = visitors
        self._visits = visits
        self._skew = clock_skew_seconds
        self._filters = hot_path_calls(hooks.filter_event, ("event", "context"))
        self._enrichers = hot_path_calls(hooks.enrich_event, ("event", "context"))
        self._drops: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count_drop(self, reason: str, events: int = 1) -> None:
        """Count ignored or refused events under their reason (thread-safe)."""
        with self._lock:
            self._drops[str(reason)] += events

    def drop_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._drops)

    def process(self, draft: Draft, context: RequestContext) -> Event:
        """Run every step; raise :class:`Dropped` or :class:`InvalidInput`, else the event."""
        try:
            site = self.resolve_site(draft)
            self.respect_privacy_signals(site, context)
            context = self.visitor_context(draft, site, context)
            timestamp = self.check_time(draft, site, context)
            event = Event(
                kind=draft.kind,
                site_id=site.id,
                timestamp=timestamp,
                name=draft.name,
                hostname=draft.page.hostname,
                path=draft.page.path,
                session_hint=draft.session_id[:64],
                **draft.fields,
            )
            # a copy: the parsed URL is cached and shared between events
            context.page_query = dict(draft.page.query) if draft.page.query else {}
            self.run_filters(event, context)
            event = self.run_enrichers(event, context)
            return self.identify_visitor(event, draft, context)
        except Dropped as drop:
            self.count_drop(drop.reason)
            raise

    # -- the steps ------------------------------------------------------------------------
    def resolve_site(self, draft: Draft) -> Site:
        hint = draft.site_hint or draft.page.hostname
        site = self._sites.get(hint) if hint else None
        if site is None:
            self.count_drop(DropReason.UNKNOWN_SITE)
            field = "site" if draft.site_hint else "metadata.page_url"
            raise InvalidInput(field, f"unknown site {hint!r}" if hint else "site is required", 404)
        if draft.page.hostname and not hostname_allowed(site, draft.page.hostname):
            raise Dropped(DropReason.HOSTNAME_NOT_ALLOWED)
        return site

    @staticmethod
    def respect_privacy_signals(site: Site, context: RequestContext) -> None:
        """Drop an event whose request carries an opt-out signal the site honours: Global
        Privacy Control (on by default) or Do-Not-Track (off by default)."""
        signals = context.signals
        if signals.gpc and site.honour_gpc:
            raise Dropped(DropReason.GLOBAL_PRIVACY_CONTROL)
        if signals.dnt and site.honour_dnt:
            raise Dropped(DropReason.DO_NOT_TRACK)

    def visitor_context(self, draft: Draft, site: Site, context: RequestContext) -> RequestContext:
        """The visitor's user agent and address, in place of the request's.

        A server-side body names its visitor with ``metadata.user_agent`` (from anyone) and
        ``metadata.ip`` (from a trusted caller only: an API key of a user who may read the
        site; an untrusted ``metadata.ip`` is ignored). A trusted caller's own User-Agent,
        when it names an HTTP library, is the server's and not the visitor's: left out.
        """
        caller = context.caller
        trusted = False
        if caller is not None:
            if not caller(site.id):  # type: ignore[operator]
                field = "site" if draft.site_hint else "metadata.page_url"
                raise InvalidInput(field, "this credential's user has no access to the site", 403)
            trusted = True
        user_agent = draft.user_agent or context.user_agent
        if trusted and not draft.user_agent and is_script_client(user_agent):
            user_agent = ""
        ip = draft.ip if trusted and draft.ip else context.client_ip
        if not trusted and user_agent is context.user_agent:
            return context
        return msgspec.structs.replace(context, client_ip=ip, user_agent=user_agent, trusted=trusted)

    def check_time(self, draft: Draft, site: Site, context: RequestContext) -> float:
        if draft.timestamp is None:
            return context.received_at
        if draft.timestamp > context.received_at + self._skew:
            self.count_drop(DropReason.IN_FUTURE)
            raise InvalidInput("timestamp", f"more than {self._skew} s in the future")
        if draft.timestamp < context.received_at - site.retention_days * 86400:
            self.count_drop(DropReason.TOO_OLD)
            raise InvalidInput(
                "timestamp", f"older than the site's retention period ({site.retention_days} days)"
            )
        return draft.timestamp

    def run_filters(self, event: Event, context: RequestContext) -> None:
        if self._filters is None:
            reason = self._hooks.filter_event(event=event, context=context)
        else:
            reason = None
            for call in self._filters:
                reason = call(event, context)
                if reason is not None:
                    break
        if reason:
            raise Dropped(reason if isinstance(reason, str) else DropReason.FILTERED)

    def run_enrichers(self, event: Event, context: RequestContext) -> Event:
        updates: dict[str, object] = {}
        if self._enrichers is None:
            results = self._hooks.enrich_event(event=event, context=context)
        else:
            results = [call(event, context) for call in self._enrichers]
        # pluggy calls later-registered plugins first; apply in registration order.
        for result in reversed(results):
            if result:
                updates.update(result)
        if not updates:
            return event
        # Values the sender gave explicitly (seed metadata browser/device) win over guesses.
        for field in ("browser", "device"):
            if getattr(event, field):
                updates.pop(field, None)
        return msgspec.structs.replace(event, **updates)

    def identify_visitor(self, event: Event, draft: Draft, context: RequestContext) -> Event:
        if draft.user_id:
            visitor = self._visitors.user_id_hash(event.site_id, draft.user_id)
            return msgspec.structs.replace(event, visitor_id=visitor, user_hashed=True)
        visitor = self._visitors.anonymous_id(
            event.site_id, context.client_ip, context.user_agent, context.received_at
        )
        visits = self._visits
        # Only just after UTC midnight can an open visit still carry yesterday's salt: skip
        # the second hash the rest of the day.
        just_after_midnight = context.received_at % 86400 <= visits.timeout
        if just_after_midnight and not visits.has_open(event.site_id, visitor, event.timestamp):
            # A visit that spans midnight keeps yesterday's id (Plausible tries the old salt).
            previous = self._visitors.previous_day_id(
                event.site_id, context.client_ip, context.user_agent, context.received_at
            )
            if previous is not None and visits.has_open(event.site_id, previous, event.timestamp):
                visitor = previous
        return msgspec.structs.replace(event, visitor_id=visitor)


def now() -> float:
    return time.time()
