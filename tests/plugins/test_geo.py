"""Geolocation: iptocc countries, the optional city database, and the time-zone fallback."""

from __future__ import annotations

import logging
import sys
import types
import zoneinfo
from pathlib import Path

import pytest

from appliance.models import Event, EventKind, RequestContext
from plugins import geo


def make_event(**fields) -> Event:
    return Event(
        kind=EventKind.PAGEVIEW,
        site_id=1,
        timestamp=0.0,
        name="pageview",
        hostname="example.com",
        **fields,
    )


def make_context(client_ip: str) -> RequestContext:
    return RequestContext(client_ip=client_ip, user_agent="", received_at=0.0)


@pytest.fixture(autouse=True)
def no_city_database(monkeypatch):
    monkeypatch.delenv(geo.CITY_DATABASE_VARIABLE, raising=False)
    monkeypatch.setattr(geo, "_configured_city_database", None)  # resolved again on the next event
    geo.open_city_database.cache_clear()
    yield
    geo.open_city_database.cache_clear()


@pytest.mark.parametrize(
    ("client_ip", "country"),
    [
        ("8.8.8.8", "US"),
        ("5.9.0.1", "DE"),
        ("2001:4860:4860::8888", "US"),
        ("::ffff:8.8.8.8", "US"),  # IPv4-mapped, as dual-stack servers report it
        (" 8.8.8.8 ", "US"),
    ],
)
def test_public_addresses_give_a_country(client_ip, country):
    assert geo.enrich_event(make_event(), make_context(client_ip)) == {"country": country}


@pytest.mark.parametrize(
    "client_ip",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "192.168.1.1",
        "172.16.0.9",
        "100.64.0.1",
        "169.254.1.1",
        "192.0.2.1",
        "198.51.100.1",
        "203.0.113.9",
        "224.0.0.1",
        "0.0.0.0",
        "fe80::1",
        "fc00::1",
        "2001:db8::1",
        "::ffff:10.0.0.1",
        "",
        "nonsense",
    ],
)
def test_private_loopback_and_malformed_addresses_give_nothing(client_ip):
    assert geo.public_address(client_ip) is None
    assert geo.enrich_event(make_event(), make_context(client_ip)) is None


def test_country_already_set_is_kept():
    assert geo.enrich_event(make_event(country="FR"), make_context("8.8.8.8")) is None


@pytest.mark.parametrize(
    ("timezone", "country"),
    [
        ("Europe/Berlin", "DE"),
        ("Europe/Copenhagen", "DK"),
        ("America/New_York", "US"),
        ("Asia/Kolkata", "IN"),
        ("Asia/Calcutta", "IN"),  # a backward-compatible alias some browsers still report
        ("Europe/Kiev", "UA"),
        ("US/Eastern", "US"),
        ("Australia/Sydney", "AU"),
    ],
)
def test_time_zone_fallback_for_private_addresses(timezone, country):
    enriched = geo.enrich_event(make_event(timezone=timezone), make_context("10.0.0.1"))
    assert enriched == {"country": country}


@pytest.mark.parametrize("timezone", ["UTC", "Etc/GMT+3", "Nowhere/Special", ""])
def test_time_zones_without_a_country(timezone):
    assert geo.enrich_event(make_event(timezone=timezone), make_context("10.0.0.1")) is None


def test_address_wins_over_the_time_zone():
    enriched = geo.enrich_event(make_event(timezone="Europe/Berlin"), make_context("8.8.8.8"))
    assert enriched == {"country": "US"}


def test_every_geographic_time_zone_of_the_tz_database_has_a_country():
    # Third-party data: every zone Python's tz database knows, mapped through zone.tab,
    # zone1970.tab and the tzdata.zi links.
    zones = [
        zone
        for zone in zoneinfo.available_timezones()
        if "/" in zone and not zone.startswith(("Etc/", "SystemV/", "posix/", "right/"))
    ]
    assert len(zones) > 300
    missing = [zone for zone in zones if not geo.country_from_timezone(zone)]
    assert len(missing) / len(zones) <= 0.02, missing


def test_time_zone_countries_are_iso_3166_codes():
    iso_tables = [Path(directory) / "iso3166.tab" for directory in geo._tz_database_directories()]
    table = next(path for path in iso_tables if path.is_file())
    codes = {
        line.split("\t")[0]
        for line in table.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    }
    assert set(geo.zone_countries().values()) <= codes


class FakeCityReader:
    """Answers like maxminddb's Reader.get for a GeoLite2/GeoIP2 City database."""

    def __init__(self, records: dict[str, dict]):
        self.records = records
        self.asked: list[str] = []
        self.opened: list[str] = []

    def get(self, address: str):
        self.asked.append(address)
        return self.records.get(address)


@pytest.fixture
def city_database(monkeypatch, tmp_path):
    reader = FakeCityReader(
        {
            "8.8.8.8": {
                "country": {"iso_code": "US"},
                "subdivisions": [{"iso_code": "CA"}, {"iso_code": "XX"}],
            },
            "5.9.0.1": {"country": {"iso_code": "DE"}},
            "2001:4860:4860::8888": {"registered_country": {"iso_code": "US"}},
        }
    )

    def open_database(path):
        reader.opened.append(path)
        return reader

    monkeypatch.setitem(
        sys.modules, "maxminddb", types.SimpleNamespace(open_database=open_database)
    )
    path = str(tmp_path / "GeoLite2-City.mmdb")
    monkeypatch.setenv(geo.CITY_DATABASE_VARIABLE, path)
    return reader


def test_city_database_gives_country_and_region(city_database):
    enriched = geo.enrich_event(make_event(), make_context("8.8.8.8"))
    assert enriched == {"country": "US", "region": "US-CA"}


def test_city_database_without_subdivision_gives_country_only(city_database):
    assert geo.enrich_event(make_event(), make_context("5.9.0.1")) == {"country": "DE"}


def test_city_database_without_country_falls_back_to_iptocc(city_database):
    assert geo.enrich_event(make_event(), make_context("2001:4860:4860::8888")) == {"country": "US"}


def test_city_database_is_opened_once(city_database):
    for _ in range(3):
        geo.enrich_event(make_event(), make_context("8.8.8.8"))
    assert len(city_database.opened) == 1


def test_city_database_is_not_asked_about_private_addresses(city_database):
    geo.enrich_event(make_event(timezone="Europe/Berlin"), make_context("192.168.0.10"))
    assert city_database.asked == []


def test_city_database_from_settings(monkeypatch, city_database):
    monkeypatch.delenv(geo.CITY_DATABASE_VARIABLE)
    appliance = types.SimpleNamespace(plugin_settings={"geo": {"city_database": "/data/city.mmdb"}}.get)
    geo.startup(appliance)
    assert geo.enrich_event(make_event(), make_context("8.8.8.8"))["region"] == "US-CA"
    assert city_database.opened == ["/data/city.mmdb"]


def test_missing_maxminddb_package_falls_back_to_iptocc(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "maxminddb", None)  # makes "import maxminddb" fail
    monkeypatch.setenv(geo.CITY_DATABASE_VARIABLE, "/nonexistent/city.mmdb")
    with caplog.at_level(logging.WARNING, logger="plugins.geo"):
        assert geo.enrich_event(make_event(), make_context("8.8.8.8")) == {"country": "US"}
    assert "maxminddb" in caplog.text


def test_unreadable_city_database_falls_back_and_never_logs_the_address(monkeypatch, caplog):
    def open_database(path):
        raise OSError(f"cannot read {path}")

    monkeypatch.setitem(
        sys.modules, "maxminddb", types.SimpleNamespace(open_database=open_database)
    )
    monkeypatch.setenv(geo.CITY_DATABASE_VARIABLE, "/nonexistent/city.mmdb")
    with caplog.at_level(logging.DEBUG):
        assert geo.enrich_event(make_event(), make_context("5.9.0.1")) == {"country": "DE"}
    assert "city.mmdb" in caplog.text
    assert "5.9.0.1" not in caplog.text


def test_addresses_are_not_cached():
    # Holding visitor IPs in an in-memory cache would keep them longer than the request.
    functions = (geo.enrich_event, geo.normalised_address, geo.public_address)
    for function in (*functions, geo._lookup_city_database):
        assert not hasattr(function, "cache_info")
