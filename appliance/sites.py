"""Sites: the domains Footfall tracks, each with its own time zone, retention and hostnames.

Kept in LMDB records and mirrored in an in-memory dict, because the ingest hot path resolves
a site for every event.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time

import msgspec

from appliance.models import Site
from appliance.periods import zone

_KIND = "site"
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?$")


class SiteError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def normalise_domain(domain: str) -> str:
    domain = domain.strip().lower()
    domain = re.sub(r"^https?://", "", domain).rstrip("/")
    return domain.removeprefix("www.")


class SiteRegistry:
    def __init__(self, store, records, default_timezone: str, default_retention_days: int) -> None:
        self._store = store
        self._records = records
        self._default_timezone = default_timezone
        self._default_retention = default_retention_days
        self._lock = threading.Lock()
        self._by_domain: dict[str, Site] = {}
        self._by_id: dict[int, Site] = {}
        for _, raw in records.scan(_KIND):
            site = msgspec.msgpack.decode(raw, type=Site)
            self._by_domain[site.domain] = site
            self._by_id[site.id] = site

    def get(self, domain: str) -> Site | None:
        site = self._by_domain.get(domain)
        if site is None and domain:
            site = self._by_domain.get(normalise_domain(domain))
        return site

    def by_id(self, site_id: int) -> Site | None:
        return self._by_id.get(site_id)

    def all(self) -> list[Site]:
        return sorted(self._by_id.values(), key=lambda site: site.id)

    def add(
        self,
        domain: str,
        *,
        name: str = "",
        timezone: str | None = None,
        retention_days: int | None = None,
        allowed_hostnames: list[str] | None = None,
    ) -> Site:
        domain = normalise_domain(domain)
        if not _DOMAIN.match(domain):
            raise SiteError("domain", f"not a valid domain: {domain!r}")
        timezone = timezone or self._default_timezone
        try:
            zone(timezone)
        except Exception:
            raise SiteError("timezone", f"unknown time zone: {timezone!r}") from None
        with self._lock:
            if domain in self._by_domain:
                raise SiteError("domain", f"site already exists: {domain}")

            def create(txn):
                site_id = self._records.next_id(txn, "site")
                site = Site(
                    id=site_id,
                    domain=domain,
                    name=name or domain,
                    timezone=timezone,
                    retention_days=retention_days or self._default_retention,
                    allowed_hostnames=allowed_hostnames or [],
                    created_at=time.time(),
                )
                self._records.put(txn, _KIND, domain, msgspec.msgpack.encode(site))
                return site

            site = self._store.write(create)
            self._by_domain[domain] = site
            self._by_id[site.id] = site
            return site

    def update(self, site: Site) -> Site:
        with self._lock:
            self._store.write(
                lambda txn: self._records.put(txn, _KIND, site.domain, msgspec.msgpack.encode(site))
            )
            self._by_domain[site.domain] = site
            self._by_id[site.id] = site
        return site

    def remove(self, domain: str, delete_data) -> bool:
        """Remove a site; ``delete_data(txn, site)`` removes its counters, sketches and events."""
        with self._lock:
            site = self._by_domain.get(normalise_domain(domain))
            if site is None:
                return False

            def remove(txn):
                delete_data(txn, site)
                self._records.delete(txn, _KIND, site.domain)

            self._store.write(remove)
            del self._by_domain[site.domain]
            del self._by_id[site.id]
            return True


def hostname_allowed(site: Site, hostname: str) -> bool:
    if not site.allowed_hostnames or not hostname:
        return True
    hostname = hostname.lower()
    return any(fnmatch.fnmatchcase(hostname, pattern) for pattern in site.allowed_hostnames)
