"""Schedules: a saved report, or the whole dashboard, sent daily, weekly or monthly at an
hour of the site's time zone to a list of notifier URLs (apprise URLs with the built-in
notifier: ``mailto://``, ``json://``, ``slack://``, ...), with the PDF and/or CSV attached.

Only analysts and admins create, see and change schedules (their URLs carry credentials: the
API shows them with any password masked). A schedule lives in LMDB records
(``schedule/<site>/<id>``); what it sent is its delivery ledger
(:mod:`appliance.reports.deliveries`); the scheduler (:mod:`appliance.reports.scheduler`)
sends. Deleting a report deletes its schedules' definitions with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import msgspec

from appliance.definitions.common import DefinitionError, checked_name
from appliance.reports.cadence import FREQUENCIES
from appliance.reports.definitions import Reports
from storage import Store
from storage.records import Records

FORMATS = ("pdf", "csv")
MAX_DESTINATIONS = 10
MAX_SCHEDULES_PER_SITE = 100
_RECORD = "schedule"


class ScheduleInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a client sends. ``report_id`` null sends the whole dashboard. On a change,
    ``destinations`` may be left out to keep the stored ones (the API never shows them in full)."""

    report_id: int | None = None
    frequency: str = "weekly"
    hour: int = 8
    weekday: int = 0  # weekly: the send day, 0 Monday ... 6 Sunday
    day: int = 1  # monthly: the send day of the month, 1-28
    destinations: list[str] | None = None
    formats: list[str] = msgspec.field(default_factory=lambda: ["pdf"])
    title: str = ""
    enabled: bool = True


class Schedule(msgspec.Struct, kw_only=True):
    id: int
    site_id: int
    report_id: int | None
    frequency: str
    hour: int
    destinations: list[str]
    formats: list[str]
    title: str = ""
    weekday: int = 0
    day: int = 1
    enabled: bool = True
    owner: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0


def masked(url: str) -> str:
    """A destination URL as it is shown: its password (``user:secret@``) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class Schedules:
    """The schedules of every site. ``accepts(url)`` raises a DomainError for a URL no
    notifier handles (the appliance's ``extensions.notifier_for``)."""

    def __init__(self, store: Store, records: Records, reports: Reports, accepts: Callable[[str], object],
                 clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # the scheduler's clock: a schedule never sends what fell due before it existed
        self._store = store
        self._records = records
        self._reports = reports
        self._accepts = accepts

    @staticmethod
    def _key(site_id: int, schedule_id: int) -> str:
        return f"{site_id:010d}/{schedule_id:010d}"

    def all(self) -> list[Schedule]:
        return [msgspec.msgpack.decode(raw, type=Schedule) for _, raw in self._records.scan(_RECORD)]

    def list(self, site_id: int) -> list[Schedule]:
        prefix = f"{site_id:010d}/"
        return [msgspec.msgpack.decode(raw, type=Schedule) for key, raw in self._records.scan(_RECORD) if key.startswith(prefix)]

    def get(self, site_id: int, schedule_id: int) -> Schedule:
        raw = self._records.get(_RECORD, self._key(site_id, schedule_id))
        if raw is None:
            raise DefinitionError("schedule_id", f"no schedule {schedule_id} on this site", 404)
        return msgspec.msgpack.decode(raw, type=Schedule)

    def _checked(self, site_id: int, data: ScheduleInput, old: Schedule | None) -> dict[str, object]:
        if data.report_id is not None:
            self._reports.get(site_id, data.report_id)  # 404 names report_id
        if data.frequency not in FREQUENCIES:
            raise DefinitionError("frequency", f"one of {', '.join(FREQUENCIES)}")
        if not 0 <= data.hour <= 23:
            raise DefinitionError("hour", "0 to 23 (the site's time zone)")
        if not 0 <= data.weekday <= 6:
            raise DefinitionError("weekday", "0 (Monday) to 6 (Sunday)")
        if not 1 <= data.day <= 28:
            raise DefinitionError("day", "1 to 28 (the day of the month)")
        if not data.formats:
            raise DefinitionError("formats", "attach at least one of pdf, csv")
        for index, name in enumerate(data.formats):
            if name not in FORMATS:
                raise DefinitionError(f"formats[{index}]", f"one of {', '.join(FORMATS)}")
        destinations = data.destinations if data.destinations is not None else (old.destinations if old else None)
        if not destinations:
            raise DefinitionError("destinations", "at least one URL (mailto://, json://, slack://, ...)")
        if len(destinations) > MAX_DESTINATIONS:
            raise DefinitionError("destinations", f"at most {MAX_DESTINATIONS} URLs")
        for index, url in enumerate(destinations):
            url = url.strip()
            if not url or len(url) > 2000 or any(ord(c) < 32 for c in url) or "://" not in url:
                raise DefinitionError(f"destinations[{index}]", "a URL such as mailto://user:password@example.com")
            try:
                self._accepts(url)
            except DefinitionError:
                raise
            except Exception as error:
                raise DefinitionError(f"destinations[{index}]", str(getattr(error, "message", error))) from None
        title = checked_name(data.title, "title", required=False) if data.title else ""
        return {
            "report_id": data.report_id, "frequency": data.frequency, "hour": data.hour, "weekday": data.weekday,
            "day": data.day,
            "destinations": [url.strip() for url in destinations], "formats": list(dict.fromkeys(data.formats)),
            "title": title, "enabled": data.enabled,
        }

    def create(self, site_id: int, data: ScheduleInput, owner: str = "") -> Schedule:
        fields = self._checked(site_id, data, None)
        if len(self.list(site_id)) >= MAX_SCHEDULES_PER_SITE:
            raise DefinitionError("schedules", f"at most {MAX_SCHEDULES_PER_SITE} schedules per site")
        made: list[Schedule] = []

        def write(txn):
            made.clear()
            now = self._clock()
            schedule = Schedule(id=self._records.next_id(txn, "schedule"), site_id=site_id, owner=owner,
                                created_at=now, updated_at=now, **fields)
            self._records.put(txn, _RECORD, self._key(site_id, schedule.id), msgspec.msgpack.encode(schedule))
            made.append(schedule)

        self._store.write(write)
        return made[0]

    def change(self, site_id: int, schedule_id: int, data: ScheduleInput) -> Schedule:
        old = self.get(site_id, schedule_id)
        schedule = msgspec.structs.replace(old, updated_at=self._clock(), **self._checked(site_id, data, old))
        key = self._key(site_id, schedule_id)
        self._store.write(lambda txn: self._records.put(txn, _RECORD, key, msgspec.msgpack.encode(schedule)))
        return schedule

    def delete(self, site_id: int, schedule_id: int) -> Schedule:
        schedule = self.get(site_id, schedule_id)
        key = self._key(site_id, schedule_id)
        self._store.write(lambda txn: self._records.delete(txn, _RECORD, key))
        return schedule
