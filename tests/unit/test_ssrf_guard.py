"""The SSRF guard refuses every non-public address, after DNS, and names why."""

from __future__ import annotations

import ipaddress

import pytest

from tasks.errors import NotAllowed, NotFound, UnsupportedUri
from tasks.fetch_http import Target
from tasks.settings import Settings
from tasks.ssrf import blocked_reason, checked_address


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.5.6.7", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped IPv6 is unwrapped first
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "metadata"),  # AWS/GCP/Azure instance metadata
        ("fd00:ec2::254", "metadata"),  # AWS metadata over IPv6
        ("100.100.100.200", "metadata"),  # Alibaba Cloud metadata
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "private"),  # "this network" is in the private table
        ("100.64.0.1", "not a public"),  # carrier-grade NAT
        ("224.0.0.1", "not a public"),  # multicast
    ],
)
def test_non_public_addresses_are_blocked(address: str, why: str) -> None:
    reason = blocked_reason(ipaddress.ip_address(address))
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_the_check_applies_to_what_a_name_resolves_to() -> None:
    # "localhost" is not an IP literal: only resolving it reveals 127.0.0.1 / ::1.
    with pytest.raises(NotAllowed, match=r"SSRF guard: localhost resolves to .*loopback"):
        checked_address("localhost", 80, Settings())
    allowed = Settings(allow_private_networks=True)
    assert checked_address("localhost", 80, allowed).is_loopback


def test_unresolvable_host_is_not_found() -> None:
    with pytest.raises(NotFound, match="cannot resolve host"):
        checked_address("no-such-host.invalid", 80, Settings())


def test_target_keeps_the_name_for_host_header_and_tls() -> None:
    t = Target.parse("https://user:p%40ss@photos.example.org:8443/a/b.jpg?size=large")
    assert (t.scheme, t.host, t.port) == ("https", "photos.example.org", 8443)
    assert t.path == "/a/b.jpg?size=large"
    assert t.host_header == "photos.example.org:8443"
    assert t.auth == "user:p@ss"
    with pytest.raises(UnsupportedUri):
        Target.parse("ftp://example.org/a.jpg")
