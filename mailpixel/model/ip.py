"""One IP parser for the whole code base: privacy, geolocation and range look-ups agree on what
an address is (IPv4-mapped IPv6 is the IPv4 address)."""

from __future__ import annotations

import ipaddress


def parse_ip(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address, with IPv4-mapped IPv6 (::ffff:a.b.c.d) unwrapped to IPv4; None if invalid."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
