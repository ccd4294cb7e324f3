"""The SSRF guard: which network addresses a worker (or a webhook) may connect to.

A URL could point a worker at the cloud metadata service or an internal admin port.
The guard resolves a host and refuses it unless *every* address it resolves to is
public; callers then connect to the checked address itself (``tasks.fetch_http``,
``producer.api.webhook``), so DNS rebinding between check and connect cannot steer
them. ``BULKTAG_ALLOW_PRIVATE_NETWORKS=true`` turns it off for trusted internal
deployments.
"""

from __future__ import annotations

import ipaddress
import socket

from tasks.errors import NotAllowed, NotFound, TransientUriError
from tasks.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Named so the refusal says what was targeted; the ranges below would refuse them anyway.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why the SSRF guard refuses ``ip``, or None for a public address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if ip.is_multicast or ip.is_unspecified or ip.is_reserved or not ip.is_global:
        return "not a public address"  # e.g. 0.0.0.0, 100.64.0.0/10 (shared), 240.0.0.0/4
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order, without duplicates.

    Raises:
        TransientUriError: a temporary DNS failure.
        NotFound: the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise TransientUriError(f"temporary DNS failure resolving {host}: {exc}") from None
        raise NotFound(f"cannot resolve host {host!r}: {exc.strerror}") from None
    seen: dict[IPAddress, None] = {}
    for info in infos:
        seen.setdefault(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]), None)
    return list(seen)


def checked_address(host: str, port: int, settings: Settings) -> IPAddress:
    """The address to connect to for ``host``, after the SSRF guard.

    Raises:
        NotAllowed: any address ``host`` resolves to is not public (guard on).
    """
    addresses = resolve(host, port)
    if not addresses:
        raise NotFound(f"cannot resolve host {host!r}: no addresses")
    if not settings.allow_private_networks:
        for ip in addresses:
            why = blocked_reason(ip)
            if why:
                raise NotAllowed(
                    f"refused by the SSRF guard: {host} resolves to {ip}, {why} "
                    "(set BULKTAG_ALLOW_PRIVATE_NETWORKS=true for trusted internal sources)"
                )
    return addresses[0]
