"""The scheduler: one thread that sends every schedule's due periods, retries failures with
back-off, and serves "Send now".

Each tick (every ``check_interval`` seconds, or at once when woken) it asks each enabled
schedule for its due periods (:func:`appliance.reports.cadence.due_periods`, so periods
missed during downtime are caught up), skips those the ledger already holds, and sends the
rest; then it retries ``retrying`` deliveries whose time has come and sends queued "Send
now" deliveries. Sending happens on this thread, never on the web server's event loop, one
destination at a time through the notifier the destination URL's scheme selects (the
apprise plugin makes one Apprise object per send). The ledger
(:mod:`appliance.reports.deliveries`) states the delivery promise and what a crash does.

Time comes from ``clock`` (``time.time`` in production): unit tests pass their own, and the
test-only ``[reports] test_clock_file`` setting lets an end-to-end test move a real
server's "now" (see :mod:`appliance.runtime.report_delivery`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date

from appliance.extensions import Message, Notifier
from appliance.models import Site
from appliance.reports.cadence import due_periods, latest_due, next_due, period_key, send_offset
from appliance.reports.deliveries import PRUNE_AFTER_DAYS, Delivery, Ledger, destination_digest
from appliance.reports.schedules import Schedule, Schedules

log = logging.getLogger(__name__)
Compose = Callable[[Schedule, Site, date, date], Message]


def _offset(schedule: Schedule) -> int:
    return send_offset(schedule.frequency, schedule.weekday, schedule.day)


class Scheduler:
    def __init__(
        self,
        *,
        schedules: Schedules,
        ledger: Ledger,
        site_by_id: Callable[[int], Site | None],
        compose: Compose,
        notifier_for: Callable[[str], Notifier],
        clock: Callable[[], float] = time.time,
        check_interval: float = 60.0,
        retry_base_seconds: float = 60.0,
        max_attempts: int = 6,
        active: Callable[[], bool] = lambda: True,
    ) -> None:
        self.schedules = schedules
        self.ledger = ledger
        self._site_by_id = site_by_id
        self._compose = compose
        self._notifier_for = notifier_for
        self.clock = clock
        self._check_interval = check_interval
        self._retry_base = retry_base_seconds
        self._max_attempts = max_attempts
        self._active = active  # false on a standby: its primary sends (the ledger is replicated)
        self._lock = threading.Lock()  # one tick at a time (the thread, a test's tick)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checked_at: float | None = None  # the clock's "now" at the end of the last tick

    # -- the thread -----------------------------------------------------------------------
    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._run, name="footfall-reports", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=30)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must outlive any one failure
                log.exception("the report scheduler's tick failed")
            self._wake.wait(self._check_interval)
            self._wake.clear()

    # -- recovery -------------------------------------------------------------------------
    def recover(self) -> int:
        """After a crash: a destination left in flight is *not* sent again (at most once);
        the delivery is ``interrupted``, or ``retrying`` when other destinations remain."""
        ids = [schedule.id for schedule in self.schedules.all()]
        count = 0
        for delivery in list(self.ledger.in_states(ids, ("sending",))):
            uncertain = [*delivery.uncertain, delivery.in_flight] if delivery.in_flight else delivery.uncertain
            delivery = Delivery(**{**_fields(delivery), "uncertain": uncertain, "in_flight": "",
                                   "state": "retrying", "next_attempt_at": 0.0, "updated_at": self.clock(),
                                   "last_error": "interrupted during the send (the process stopped); "
                                                 "not sent again to the destination it was sending to"})
            self.ledger.put(delivery)
            count += 1
        return count

    # -- one tick -------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> dict[str, int]:
        """Send what is due at ``now`` (default: the clock); returns counts by outcome."""
        with self._lock:
            now = self.clock() if now is None else now
            done: dict[str, int] = {}
            if not self._active():
                return done
            for schedule in self.schedules.all():
                site = self._site_by_id(schedule.site_id)
                if site is None:
                    continue
                work: list[Delivery] = []
                if schedule.enabled:
                    for start, end in due_periods(schedule.frequency, schedule.hour, site.timezone, now, schedule.created_at,
                                                  _offset(schedule)):
                        key = period_key(schedule.frequency, start)
                        if self.ledger.get(schedule.id, key) is None:
                            work.append(Delivery(schedule_id=schedule.id, key=key, start_date=start.isoformat(),
                                                 end_date=end.isoformat(), created_at=now))
                for delivery in self.ledger.of(schedule.id):
                    if delivery.state == "queued" or (delivery.state == "retrying" and delivery.next_attempt_at <= now):
                        work.append(delivery)
                for delivery in sorted(work, key=lambda d: d.created_at):
                    outcome = self._deliver(schedule, site, delivery, now)
                    done[outcome.state] = done.get(outcome.state, 0) + 1
            self.checked_at = now
            return done

    def prune(self, now: float | None = None) -> dict[str, int]:
        """The hourly jobs' upkeep: every schedule's ``sent`` records older than
        :data:`~appliance.reports.deliveries.PRUNE_AFTER_DAYS`, beyond its newest few
        (:meth:`Ledger.prune`). Nothing on a standby (the ledger is replicated)."""
        now = self.clock() if now is None else now
        with self._lock:
            if not self._active():
                return {"deliveries": 0}
            before = now - PRUNE_AFTER_DAYS * 86400
            return {"deliveries": sum(self.ledger.prune(s.id, before) for s in self.schedules.all())}

    def send_now(self, schedule: Schedule) -> Delivery:
        """Queue a test send of the latest closed period (kept apart from the period's own
        send: a test never uses up a scheduled one); the scheduler thread sends it."""
        site = self._site_by_id(schedule.site_id)
        timezone = site.timezone if site is not None else "UTC"
        now = self.clock()
        start, end = latest_due(schedule.frequency, 0, timezone, now)
        delivery = Delivery(schedule_id=schedule.id, key=f"manual:{int(time.time() * 1000)}", manual=True,
                            start_date=start.isoformat(), end_date=end.isoformat(), created_at=now, updated_at=now)
        self.ledger.put(delivery)
        self.wake()
        return delivery

    def status(self, schedule: Schedule, limit: int = 10) -> dict[str, object]:
        """What the schedule's page shows: the last delivery, the next send, recent history."""
        site = self._site_by_id(schedule.site_id)
        recent = self.ledger.of(schedule.id)[:limit]
        timezone = site.timezone if site is not None else "UTC"
        return {
            "checked_at": self.checked_at,
            "next_send_at": (next_due(schedule.frequency, schedule.hour, timezone, self.clock(), _offset(schedule))
                             if schedule.enabled else None),
            "last": _view(recent[0]) if recent else None,
            "deliveries": [_view(d) for d in recent],
        }

    def delete_schedule(self, site_id: int, schedule_id: int) -> Schedule:
        """Delete a schedule with its delivery history."""
        schedule = self.schedules.delete(site_id, schedule_id)
        self.ledger.forget(schedule.id)
        return schedule

    def delete_report_schedules(self, site_id: int, report_id: int) -> int:
        """Delete the schedules of a deleted report, with their histories."""
        doomed = [s for s in self.schedules.list(site_id) if s.report_id == report_id]
        for schedule in doomed:
            self.delete_schedule(site_id, schedule.id)
        return len(doomed)

    # -- sending --------------------------------------------------------------------------
    def _deliver(self, schedule: Schedule, site: Site, delivery: Delivery, now: float) -> Delivery:
        fields = _fields(delivery)
        fields["attempts"] = delivery.attempts + 1
        done = set(delivery.delivered) | set(delivery.uncertain)
        pending = [url for url in schedule.destinations if destination_digest(url) not in done]
        errors: list[str] = []
        if pending:
            try:
                message = self._compose(schedule, site, date.fromisoformat(delivery.start_date),
                                        date.fromisoformat(delivery.end_date))
            except Exception as error:
                log.exception("building scheduled report %s failed", schedule.id)
                message, errors = None, [f"building the report failed: {error}"]
            for url in pending if message is not None else ():
                digest = destination_digest(url)
                fields.update(state="sending", in_flight=digest, updated_at=self.clock())
                self.ledger.put(Delivery(**fields))  # durable before the send (see deliveries)
                try:
                    self._notifier_for(url).send(url, message)
                except Exception as error:
                    log.warning("scheduled report %s to a %s destination failed: %s", schedule.id,
                                url.split(":", 1)[0], error)
                    errors.append(f"{url.split('://', 1)[0]}://…: {error}")
                else:
                    fields["delivered"] = [*fields["delivered"], digest]
                fields["in_flight"] = ""
        fields["updated_at"] = self.clock()
        if errors:
            fields["last_error"] = "; ".join(errors)[:1000]
            if fields["attempts"] >= self._max_attempts:
                fields["state"] = "failed"
            else:
                fields["state"] = "retrying"
                fields["next_attempt_at"] = now + self.backoff(fields["attempts"])
        elif fields["uncertain"]:
            fields["state"] = "interrupted"
        else:
            fields.update(state="sent", sent_at=self.clock(), last_error="")
        return self.ledger.put(Delivery(**fields))

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``: the base doubled per failure, at most a day."""
        return min(self._retry_base * 2 ** (attempts - 1), 86_400.0)


def _fields(delivery: Delivery) -> dict[str, object]:
    return {name: getattr(delivery, name) for name in Delivery.__struct_fields__}


def _view(delivery: Delivery) -> dict[str, object]:
    out = _fields(delivery)
    out.pop("delivered")
    out.pop("uncertain")
    out.pop("in_flight")
    out["destinations_sent"] = len(delivery.delivered)
    out["destinations_uncertain"] = len(delivery.uncertain)
    return out
