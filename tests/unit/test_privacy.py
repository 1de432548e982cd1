"""IP storage modes and retention, through the real Lambda handler and DynamoDB Local."""

from __future__ import annotations

from mailpixel.pixel.privacy import stored_ip

IPV4 = "198.51.100.77"
IPV6 = "2001:db8:abcd:12:3456:789a:bcde:f012"

# mode, source IP, stored `ip` (None: no attribute), `pending_ip` kept for enrichment's geolocation.
CASES = [
    ("full", IPV4, IPV4, None),
    ("truncated", IPV4, "198.51.100.0", IPV4),
    ("none", IPV4, None, IPV4),
    ("full", IPV6, IPV6, None),
    ("truncated", IPV6, "2001:db8:abcd::", IPV6),
    ("none", IPV6, None, IPV6),
]


def test_truncation_boundaries():
    assert stored_ip("10.1.2.255", "truncated") == "10.1.2.0"
    assert stored_ip("2001:db8:ffff:ffff::1", "truncated") == "2001:db8:ffff::"
    assert stored_ip("::1", "truncated") == "::"
    assert stored_ip("not-an-ip", "truncated") is None
    assert stored_ip("not-an-ip", "full") == "not-an-ip"
    assert stored_ip("", "full") is None
