"""The aggregate items' attribute names, shared by their writer (enrich) and reader (api).

Breakdown counters are flat attributes, because `ADD` works on top-level attributes only:
`machine:<reason>`, and over human opens `client:<name>`, `country:<CC>` and `proxy:<name>`.
"""

from __future__ import annotations

COUNTERS = ("opens", "human_opens", "machine_opens", "clicks", "human_clicks", "machine_clicks")
MACHINE_PREFIX = "machine:"
CLIENT_PREFIX = "client:"
COUNTRY_PREFIX = "country:"
PROXY_PREFIX = "proxy:"
BREAKDOWN_PREFIXES = (MACHINE_PREFIX, CLIENT_PREFIX, COUNTRY_PREFIX, PROXY_PREFIX)
