"""The Koyeb API: one client, one request path, one network, the exec websocket, paging.

:class:`KoyebClient` adds auth, total deadlines, retries, size caps and error mapping to
every request, and :meth:`KoyebClient.pages` reads every listing (paging style,
read-ahead, stop rule, page statistics); :class:`Network` decides TLS trust and proxies
for REST and websocket alike. The argument checks every entry point shares live beside
them.
"""

from __future__ import annotations

from ._client import KoyebClient, discover_credentials
from ._network import Network

__all__ = ["KoyebClient", "Network", "discover_credentials"]
