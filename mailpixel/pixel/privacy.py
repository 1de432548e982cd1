"""How much of the reader's IP address is kept (`MAILPIXEL_IP_STORAGE`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailpixel.model.ip import network_of

if TYPE_CHECKING:
    from mailpixel.config import IpStorage


def stored_ip(ip: str, mode: IpStorage) -> str | None:
    """`full` keeps the address, `truncated` keeps its IPv4 /24 or IPv6 /48 network, `none` nothing.

    An address that does not parse is kept only in `full` mode (it is what API Gateway sent).
    """
    if not ip or mode == "none":
        return None
    if mode == "full":
        return ip
    return network_of(ip)
