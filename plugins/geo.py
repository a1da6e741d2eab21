"""Geolocation: the visitor's country (ISO 3166-1 alpha-2) and, with a city database, region.

The client IP is looked up in memory and forgotten: it is never stored, logged or cached.
Sources, first answer wins: an optional MaxMind-format city database (country and ISO 3166-2
subdivision, e.g. ``"DE-BE"``), named by the plugin's own setting ``[plugins.geo]
city_database`` (or ``FOOTFALL_PLUGIN_GEO_CITY_DATABASE``) and read with the optional ``maxminddb`` package; then the offline
country table of ``iptocc``; then, for visitors whose address says nothing (private networks,
proxies), the browser's IANA time zone mapped to its country through the tz database's
``zone.tab``, ``zone1970.tab`` and the links in ``tzdata.zi``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import re
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import iptocc

from appliance import hookimpl

if TYPE_CHECKING:
    from appliance.models import Event, RequestContext
    from appliance.runtime.appliance import Appliance

log = logging.getLogger(__name__)

CITY_DATABASE_VARIABLE = "FOOTFALL_PLUGIN_GEO_CITY_DATABASE"  # also [plugins.geo] city_database
# Registries answer with these for ranges that belong to no single country.
_NOT_COUNTRIES = frozenset({"ZZ", "EU", "AP"})
_COUNTRY_CODE = re.compile(r"[A-Z]{2}")
_SUBDIVISION_CODE = re.compile(r"[A-Z0-9]{1,3}")

# The city database's path, resolved once: by ``startup`` from the plugin's settings
# ([plugins.geo] city_database; the environment variable wins), or on the first event when
# ``startup`` has not run. ``None``: not resolved yet; ``""``: no city database. Reading the
# environment per event cost ~2 µs (``os.environ`` raises and catches a KeyError for an unset
# variable), a sixth of the whole enrichment.
_configured_city_database: str | None = None


def normalised_address(client_ip: str) -> str:
    """``client_ip`` without spaces, and an IPv4-mapped IPv6 address as plain IPv4."""
    address = client_ip.strip()
    if address[:7].lower() == "::ffff:" and "." in address:
        return address[7:]
    return address


def public_address(client_ip: str) -> str | None:
    """``client_ip`` normalised, or ``None`` when it is malformed or not publicly routable."""
    try:
        address = ipaddress.ip_address(normalised_address(client_ip))
    except ValueError:
        return None
    return str(address) if address.is_global and not address.is_multicast else None


def _country(code: object) -> str:
    if not isinstance(code, str):
        return ""
    code = code.upper()
    if not _COUNTRY_CODE.fullmatch(code) or code in _NOT_COUNTRIES:
        return ""
    return code


def city_database_path(configured: str = "") -> str:
    """The city database to use: the environment variable, else ``configured``."""
    return os.environ.get(CITY_DATABASE_VARIABLE, "") or configured


def _city_database() -> str:
    global _configured_city_database
    if _configured_city_database is None:
        _configured_city_database = city_database_path()
    return _configured_city_database


@functools.cache
def open_city_database(path: str) -> Any | None:
    """The opened MaxMind-format reader for ``path``, or ``None`` if it cannot be used."""
    try:
        import maxminddb
    except ImportError:
        log.warning("geo: a city database is configured but the maxminddb package is missing")
        return None
    try:
        return maxminddb.open_database(path)
    except (OSError, ValueError, RuntimeError) as error:
        log.warning("geo: cannot open city database %s: %s", path, error)
        return None


def _lookup_city_database(client_ip: str) -> tuple[str, str]:
    path = _configured_city_database if _configured_city_database is not None else _city_database()
    if not path:
        return "", ""  # the common case: no city database
    reader = open_city_database(path)
    if reader is None:
        return "", ""
    address = public_address(client_ip)
    if address is None:
        return "", ""
    try:
        record = reader.get(address)
    except ValueError:
        return "", ""
    if not isinstance(record, dict):
        return "", ""
    country = _country((record.get("country") or {}).get("iso_code"))
    if not country:
        return "", ""
    region = ""
    subdivisions = record.get("subdivisions") or []
    if subdivisions and isinstance(subdivisions[0], dict):
        code = subdivisions[0].get("iso_code")
        if isinstance(code, str) and _SUBDIVISION_CODE.fullmatch(code.upper()):
            region = f"{country}-{code.upper()}"
    return country, region


def _tz_database_directories() -> list[Path]:
    directories = [Path(directory) for directory in zoneinfo.TZPATH]
    try:
        import importlib.resources

        directories.append(Path(str(importlib.resources.files("tzdata") / "zoneinfo")))
    except ImportError:
        pass
    return directories


def _read_zone_table(path: Path, countries: dict[str, str]) -> None:
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) >= 3:
            # zone1970.tab lists every country sharing a zone; the first is the zone's home.
            countries[columns[2]] = columns[0].split(",")[0]


@functools.cache
def zone_countries() -> dict[str, str]:
    """IANA time zone name (canonical or alias) to country code, from the tz database."""
    for directory in _tz_database_directories():
        zone_table = directory / "zone.tab"
        zone1970_table = directory / "zone1970.tab"
        if not (zone_table.is_file() or zone1970_table.is_file()):
            continue
        countries: dict[str, str] = {}
        if zone1970_table.is_file():
            _read_zone_table(zone1970_table, countries)
        if zone_table.is_file():
            # zone.tab names one country per zone, including the zones zone1970.tab merged.
            _read_zone_table(zone_table, countries)
        links = directory / "tzdata.zi"
        if links.is_file():
            for line in links.read_text(encoding="utf-8").splitlines():
                if line.startswith("L "):
                    _, target, alias = line.split()[:3]
                    if alias not in countries and target in countries:
                        countries[alias] = countries[target]
        return countries
    log.warning("geo: no tz database found (install tzdata); time-zone fallback disabled")
    return {}


def country_from_timezone(timezone: str) -> str:
    return _country(zone_countries().get(timezone.strip()))


@hookimpl
def enrich_event(event: Event, context: RequestContext) -> dict[str, Any] | None:
    if event.country:
        return None
    country, region = _lookup_city_database(context.client_ip)
    if not country:
        # iptocc's registry data has no private, loopback or reserved ranges (they answer
        # None), so the address needs no ipaddress validation on this, the common, path.
        country = _country(iptocc.country_code(normalised_address(context.client_ip)))
    if not country and event.timezone:
        country = country_from_timezone(event.timezone)
    if not country:
        return None
    return {"country": country, "region": region} if region else {"country": country}


@hookimpl
def startup(appliance: Appliance) -> None:
    global _configured_city_database
    _configured_city_database = city_database_path(str(appliance.plugin_settings("geo").get("city_database", "") or ""))
    if _configured_city_database:
        open_city_database(_configured_city_database)
    zone_countries()
