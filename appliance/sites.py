"""Sites: the domains Footfall tracks, each with its own time zone, retention and hostnames.

Kept in LMDB records and mirrored in an in-memory dict, because the ingest hot path resolves
a site for every event. Another process may change the records (``footfall site add`` beside
a running server): every write bumps the ``sites`` generation in the same transaction, and
the registry reloads when the generation moved, checked when a domain or id is not found
and otherwise at most every ``RECHECK_SECONDS`` (no LMDB transaction per event). A site may be public (anyone may read its dashboard) and may have a
shared-link token: a secret, stored only as a digest, that grants read-only access to that
one site, as Plausible's shared links do.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
import threading
import time

import msgspec

from appliance.errors import DomainError
from appliance.filters import Wildcard
from appliance.identifiers import control_character, normalised
from appliance.models import Site
from appliance.periods import zone

_KIND = "site"
_SHARE = "share"
_HOSTNAME_PATTERN = re.compile(r"^[a-z0-9*]([a-z0-9*.-]{0,251}[a-z0-9*])?$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?(:\d{1,5})?$")
_GENERATION = "sites"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RECHECK_SECONDS = 1.0


class SiteError(DomainError):
    """A site that cannot be made or changed as asked (422), or is unknown (404)."""


def normalise_domain(domain: str) -> str:
    domain = normalised(domain).lower()
    domain = re.sub(r"^https?://", "", domain).rstrip("/")
    return domain.removeprefix("www.")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _checked_domain(domain: str) -> str:
    domain = normalise_domain(domain or "")
    if not _DOMAIN.fullmatch(domain):
        raise SiteError("domain", f"not a valid domain: {domain!r}")
    return domain


def _checked_timezone(timezone: str) -> str:
    try:
        zone(timezone)
    except Exception:
        raise SiteError("timezone", f"unknown time zone: {timezone!r}") from None
    return timezone


def _checked_retention(days: int) -> int:
    if not 1 <= days <= 36_500:
        raise SiteError("retention_days", "must be between 1 and 36500 days")
    return days


def _checked_hostnames(patterns: list[str]) -> list[str]:
    cleaned = []
    for pattern in patterns:
        pattern = normalised(pattern).lower()
        if not _HOSTNAME_PATTERN.fullmatch(pattern):
            raise SiteError("allowed_hostnames", f"not a hostname or pattern: {pattern!r}")
        cleaned.append(pattern)
    return cleaned


def _checked_umami_id(website_id: str) -> str:
    website_id = normalised(website_id).lower()
    if website_id and not _UUID.fullmatch(website_id):
        raise SiteError("umami_website_id", f"not an Umami website id (a UUID): {website_id!r}")
    return website_id


def _checked_plausible_id(site_id: str) -> str:
    if not normalised(site_id):
        return ""
    try:
        return _checked_domain(site_id)
    except SiteError:
        raise SiteError("plausible_site_id", f"not a domain: {site_id!r}") from None


def aliases_of(site: Site) -> tuple[str, ...]:
    """The other tools' names of ``site`` that resolve to it (see :class:`Site`)."""
    return tuple(alias for alias in (site.umami_website_id, site.plausible_site_id) if alias)


def _checked_name(name: str) -> str:
    name = normalised(name)
    if problem := control_character(name):
        raise SiteError("name", problem)
    return name


class SiteRegistry:
    def __init__(self, store, records, default_timezone: str, default_retention_days: int) -> None:
        self._store = store
        self._records = records
        self._default_timezone = default_timezone
        self._default_retention = default_retention_days
        self._lock = threading.Lock()  # serialises this process's writes of sites
        # Guards the in-memory copy and its generation; never held across a wait for
        # another thread (``remove`` holds ``_lock`` while the writer thread reads sites).
        self._memory = threading.Lock()
        self._by_domain: dict[str, Site] = {}
        self._by_id: dict[int, Site] = {}
        self._by_alias: dict[str, Site] = {}  # Umami website ids, Plausible site ids
        self._generation = -1  # the generation the in-memory copy reflects
        self._removing: set[int] = set()  # unlisted while their data goes: never reloaded
        self._next_check = 0.0
        self.reload_if_changed()

    # -- noticing other processes' writes --------------------------------------------------
    def reload_if_changed(self) -> bool:
        """Reload every site if the stored generation moved; True if it did."""
        self._next_check = time.monotonic() + RECHECK_SECONDS
        # light: one record, every second while the tracker is busy (appliance/heap.py MapReleaser)
        with self._store.read(light=True) as txn:
            generation = self._records.generation(_GENERATION, txn)
            if generation == self._generation:
                return False
            sites = [msgspec.msgpack.decode(raw, type=Site) for _, raw in self._records.scan(_KIND, txn)]
        with self._memory:
            sites = [site for site in sites if site.id not in self._removing]
            self._by_domain = {site.domain: site for site in sites}
            self._by_id = {site.id: site for site in sites}
            self._index_aliases()
            self._generation = generation
        return True

    def _recheck_now_and_then(self) -> None:
        if time.monotonic() >= self._next_check:
            self.reload_if_changed()

    def _bump(self, txn) -> int:
        return self._records.bump_generation(txn, _GENERATION)

    def _index_aliases(self) -> None:
        """Rebuild the alias index from ``_by_id`` (under ``_memory``; sites are few)."""
        self._by_alias = {alias: site for site in self._by_id.values() for alias in aliases_of(site)}

    def _check_aliases_free(self, site: Site) -> None:
        """Refuse another site's domain or alias as an alias of ``site`` (409)."""
        for alias, field in ((site.umami_website_id, "umami_website_id"), (site.plausible_site_id, "plausible_site_id")):
            if not alias:
                continue
            other = self._by_alias.get(alias) or self._by_domain.get(alias)
            if other is not None and other.id != site.id:
                raise SiteError(field, f"{alias!r} already names the site {other.domain}", 409)

    def _wrote(self, previous: int, change) -> None:
        """After a committed write that bumped the generation from ``previous``: apply it to
        the in-memory copy. If someone else wrote in between, the copy stays marked stale
        (its generation behind the stored one) and the next check reloads it."""
        with self._memory:
            change()
            self._index_aliases()
            if previous == self._generation:
                self._generation = previous + 1

    # -- lookups --------------------------------------------------------------------------
    def _lookup(self, domain: str) -> Site | None:
        by_domain = self._by_domain
        site = by_domain.get(domain)
        if site is None and domain:
            site = by_domain.get(normalise_domain(domain)) or self._by_alias.get(normalise_domain(domain))
        return site

    def get(self, domain: str) -> Site | None:
        self._recheck_now_and_then()
        site = self._lookup(domain)
        if site is None and domain and self.reload_if_changed():
            site = self._lookup(domain)
        return site

    def by_id(self, site_id: int) -> Site | None:
        self._recheck_now_and_then()
        site = self._by_id.get(site_id)
        if site is None and self.reload_if_changed():
            site = self._by_id.get(site_id)
        return site

    def all(self) -> list[Site]:
        self._recheck_now_and_then()
        return sorted(self._by_id.values(), key=lambda site: site.id)

    def add(
        self,
        domain: str,
        *,
        name: str = "",
        timezone: str | None = None,
        retention_days: int | None = None,
        allowed_hostnames: list[str] | None = None,
        umami_website_id: str = "",
        plausible_site_id: str = "",
    ) -> Site:
        domain = _checked_domain(domain)
        umami_website_id = _checked_umami_id(umami_website_id)
        plausible_site_id = _checked_plausible_id(plausible_site_id)
        timezone = _checked_timezone(timezone or self._default_timezone)
        retention_days = _checked_retention(retention_days or self._default_retention)
        allowed_hostnames = _checked_hostnames(allowed_hostnames or [])
        name = _checked_name(name)
        with self._lock:
            if self.get(domain) is not None:
                raise SiteError("domain", f"site already exists: {domain}")
            self._check_aliases_free(
                Site(id=-1, domain=domain, umami_website_id=umami_website_id, plausible_site_id=plausible_site_id)
            )

            def create(txn):
                if self._records.get(_KIND, domain, txn) is not None:  # made by another process
                    raise SiteError("domain", f"site already exists: {domain}")
                previous = self._bump(txn)
                site_id = self._records.next_id(txn, "site")
                site = Site(
                    id=site_id,
                    domain=domain,
                    name=name or domain,
                    timezone=timezone,
                    retention_days=retention_days,
                    allowed_hostnames=allowed_hostnames,
                    created_at=time.time(),
                    umami_website_id=umami_website_id,
                    plausible_site_id=plausible_site_id,
                )
                self._records.put(txn, _KIND, domain, msgspec.msgpack.encode(site))
                return site, previous

            site, previous = self._store.write(create)

            def remember():
                self._by_domain[domain] = site
                self._by_id[site.id] = site

            self._wrote(previous, remember)
            return site

    def change(
        self,
        domain: str,
        *,
        new_domain: str | None = None,
        name: str | None = None,
        timezone: str | None = None,
        retention_days: int | None = None,
        allowed_hostnames: list[str] | None = None,
        public: bool | None = None,
        umami_website_id: str | None = None,
        plausible_site_id: str | None = None,
        honour_gpc: bool | None = None,
        honour_dnt: bool | None = None,
    ) -> Site:
        """Rename a site (its name or its domain) or change its settings. Its data stays:
        everything stored is keyed by the site's id, not its domain."""
        site = self.get(domain)
        if site is None:
            raise SiteError("domain", f"unknown site {domain!r}", 404)
        changed = msgspec.structs.replace(site)
        if name is not None:
            changed.name = _checked_name(name) or site.domain
        if timezone is not None:
            changed.timezone = _checked_timezone(timezone)
        if retention_days is not None:
            changed.retention_days = _checked_retention(retention_days)
        if allowed_hostnames is not None:
            changed.allowed_hostnames = _checked_hostnames(allowed_hostnames)
        if public is not None:
            changed.public = public
        if umami_website_id is not None:
            changed.umami_website_id = _checked_umami_id(umami_website_id)
        if plausible_site_id is not None:
            changed.plausible_site_id = _checked_plausible_id(plausible_site_id)
        if honour_gpc is not None:
            changed.honour_gpc = honour_gpc
        if honour_dnt is not None:
            changed.honour_dnt = honour_dnt
        with self._lock:
            self._check_aliases_free(changed)
            if new_domain is not None and _checked_domain(new_domain) != site.domain:
                changed.domain = _checked_domain(new_domain)
                if self.get(changed.domain) is not None:
                    raise SiteError("domain", f"site already exists: {changed.domain}", 409)

            def write(txn):
                if changed.domain != site.domain:
                    if self._records.get(_KIND, changed.domain, txn) is not None:
                        raise SiteError("domain", f"site already exists: {changed.domain}", 409)
                    self._records.delete(txn, _KIND, site.domain)
                self._records.put(txn, _KIND, changed.domain, msgspec.msgpack.encode(changed))
                return self._bump(txn)

            previous = self._store.write(write)

            def remember():
                self._by_domain[changed.domain] = changed
                self._by_id[changed.id] = changed
                if changed.domain != site.domain:
                    self._by_domain.pop(site.domain, None)

            self._wrote(previous, remember)
        return changed

    def update(self, site: Site) -> Site:
        def write(txn):
            self._records.put(txn, _KIND, site.domain, msgspec.msgpack.encode(site))
            return self._bump(txn)

        with self._lock:
            previous = self._store.write(write)

            def remember():
                self._by_domain[site.domain] = site
                self._by_id[site.id] = site

            self._wrote(previous, remember)
        return site

    def remove(self, domain: str, delete_data, flush=None) -> bool:
        """Remove a site; ``delete_data(txn, site)`` removes its counters, sketches and events;
        ``flush()``, called after the site is unlisted, waits for events still in flight."""
        with self._lock:
            site = self.get(normalise_domain(domain))
            if site is None:
                return False

            # Unlisted first, so ingestion stops resolving it before its data goes (and a
            # reload meanwhile does not bring it back).
            with self._memory:
                self._removing.add(site.id)
                self._by_domain.pop(site.domain, None)
                self._by_id.pop(site.id, None)
            try:
                if flush is not None:
                    flush()

                def remove(txn):
                    delete_data(txn, site)
                    self._records.delete(txn, _KIND, site.domain)
                    self._records.delete(txn, _SHARE, str(site.id))
                    return self._bump(txn)

                previous = self._store.write(remove, bulk=True)  # every row the site owns
                self._wrote(previous, lambda: None)
            finally:
                with self._memory:
                    self._removing.discard(site.id)
            return True

    # -- shared links ---------------------------------------------------------------------
    def create_share_token(self, site: Site) -> str:
        """A new shared-link token for ``site`` (replacing any previous one), shown once."""
        token = "ffs_" + secrets.token_urlsafe(24)
        self._store.write(lambda txn: self._records.put(txn, _SHARE, str(site.id), _digest(token).encode()))
        return token

    def delete_share_token(self, site: Site) -> bool:
        return self._store.write(lambda txn: self._records.delete(txn, _SHARE, str(site.id)))

    def has_share_token(self, site: Site) -> bool:
        return self._records.get(_SHARE, str(site.id)) is not None

    def site_for_share_token(self, token: str) -> Site | None:
        """The one site a shared-link token opens, or None."""
        if not token.startswith("ffs_"):
            return None
        wanted = _digest(token).encode()
        for identifier, stored in self._records.scan(_SHARE):
            if secrets.compare_digest(stored, wanted):
                return self.by_id(int(identifier))
        return None


def hostname_allowed(site: Site, hostname: str) -> bool:
    if not site.allowed_hostnames or not hostname:
        return True
    hostname = hostname.lower()
    return any(_wildcard(pattern).fullmatch(hostname) for pattern in site.allowed_hostnames)


@functools.lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> Wildcard:
    return Wildcard(pattern)


def stored_sites(records, txn) -> list[Site]:
    """Every site as stored, read in ``txn`` (a backup's manifest reads them in the
    transaction it copies)."""
    return [msgspec.msgpack.decode(raw, type=Site) for _, raw in records.scan(_KIND, txn)]
