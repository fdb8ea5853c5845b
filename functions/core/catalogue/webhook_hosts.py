"""Where a webhook may point, decided without DNS: public addresses only, and well-formed host names.

An address is acceptable when it is globally routable (not private, shared/CGNAT 100.64/10,
loopback, link-local, unique-local, multicast, reserved, documentation or unspecified), and so is
every IPv4 address embedded in it: IPv4-mapped (::ffff:a.b.c.d), 6to4 (2002::/16), Teredo
(2001::/32) and NAT64 (64:ff9b::/96, 64:ff9b:1::/48) addresses all reach an IPv4 host, so
2002:a9fe:a9fe:: is Azure's metadata endpoint 169.254.169.254 in disguise. Local development may
allow loopback, nothing else.

The policy applies this to URLs whose host is an address literal (no resolver ever sees those);
the webhook adapter applies it to every address a host name resolves to, at connect time.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# Not globally reachable per IANA, yet is_global says yes to most of it (Python lists only /29 of it).
_IETF_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
MAX_HOST_NAME = 253  # DNS: 255 octets on the wire, 253 characters written out
MAX_LABEL = 63


def literal_address(host: str) -> IPAddress | None:
    """The address a URL's host names literally (an IPv6 zone id dropped), else None."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    embedded = []
    if ip.ipv4_mapped is not None:
        embedded.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        embedded.append(ip.sixtofour)
    if ip.teredo is not None:
        embedded.extend(ip.teredo)  # (server, client)
    if any(ip in network for network in _NAT64):
        embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return embedded


def _public(ip: IPAddress) -> bool:
    if ip in _IETF_PROTOCOL_ASSIGNMENTS:
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def address_allowed(address: str | IPAddress, *, allow_loopback: bool) -> bool:
    """May a webhook delivery connect to this address?"""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%", 1)[0])
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if ip.ipv4_mapped is not None:
            candidates = []  # ::ffff:a.b.c.d is a.b.c.d itself (is_global says no to the mapped form)
        candidates.extend(embedded)
    for candidate in candidates:
        if candidate.is_loopback:
            if not allow_loopback:
                return False
        elif not _public(candidate):
            return False
    return True


def host_problem(host: str, *, allow_loopback: bool) -> str | None:
    """Why a webhook URL's host is unacceptable before any lookup (None: acceptable so far)."""
    ip = literal_address(host)
    if ip is not None:
        if address_allowed(ip, allow_loopback=allow_loopback):
            return None
        return "webhook URLs must point at a public address (this one is private, loopback, link-local or reserved)"
    if len(host.rstrip(".")) > MAX_HOST_NAME:
        return f"the host name is longer than {MAX_HOST_NAME} characters"
    try:
        labels = host.encode("idna").decode("ascii").rstrip(".").split(".")
    except UnicodeError:
        return "the host name is not a valid DNS name (an empty label, or one longer than 63 characters)"
    if any(not label or len(label) > MAX_LABEL for label in labels):
        return "the host name is not a valid DNS name (an empty label, or one longer than 63 characters)"
    return None
