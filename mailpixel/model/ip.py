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


def network_of(ip: str | None) -> str | None:
    """The address's IPv4 /24 or IPv6 /48 network address, what `truncated` privacy keeps;
    None when it does not parse."""
    address = parse_ip(ip)
    if address is None:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
