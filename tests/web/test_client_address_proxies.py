"""The client address behind trusted proxies (web.ingest.ClientAddress): a dotted quad is
checked against the IPv4 networks with the C parser, anything else with ``ipaddress``; both
must give exactly ``ipaddress``'s verdict."""

from __future__ import annotations

import ipaddress

import pytest

from web.ingest import ClientAddress

PROXIES = ["127.0.0.1", "10.0.0.0/8", "192.168.4.0/22", "::1", "fd00::/8"]
ADDRESSES = [
    "127.0.0.1", "127.0.0.2", "10.255.255.255", "11.0.0.1", "192.168.7.255", "192.168.8.0", "0.0.0.0",
    "255.255.255.255", "::1", "fd12::5", "fe80::1", "::ffff:127.0.0.1", "010.0.0.1", "1.2.3", "256.0.0.1",
    "10.0.0.1 ", "", "proxy.local", "10.0.0.1\x00", "fe80::1%eth0",
]


def _reference(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(item, strict=False) for item in PROXIES)


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_verdict_is_ipaddress_verdict(address):
    assert ClientAddress(PROXIES).is_trusted_proxy(address) is _reference(address)


def test_the_client_is_the_right_most_untrusted_hop_from_a_trusted_peer():
    address = ClientAddress(PROXIES)
    scope = {"client": ("127.0.0.1", 5000), "headers": [(b"x-forwarded-for", b"203.0.113.9, 10.1.2.3, 192.168.5.1")]}
    assert address(scope) == "203.0.113.9"
    scope["client"] = ("203.0.113.50", 5000)  # not a proxy: its header is not believed
    assert address(scope) == "203.0.113.50"
    assert ClientAddress([])({"client": ("127.0.0.1", 1), "headers": scope["headers"]}) == "127.0.0.1"
