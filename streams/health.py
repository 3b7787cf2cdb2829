"""Is the broker answering? A Kafka ApiVersions round trip, for /readyz.

A TCP connect alone is not enough: a stopped (SIGSTOP) or wedged broker still
accepts connections in the kernel's backlog. ApiVersions (key 18, version 0) is
the smallest request every Kafka-compatible broker answers, before any
authentication, so a matching correlation id in the reply proves a live broker.
On a TLS listener (SSL, SASL_SSL) the request goes inside TLS with the clients'
context: the probe asks the listener the clients use, as they do.

Must never: block the event loop (asyncio streams with a timeout only).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl as _ssl
import struct

_API_VERSIONS = 18
_CLIENT_ID = b"churn-signals-health"
_correlation = itertools.count(1)


def bootstrap_hosts(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for part in bootstrap.split(","):
        host, _, port = part.strip().rpartition(":")
        if host and port.isdigit():
            out.append((host.strip("[]"), int(port)))
    return out


async def _api_versions(host: str, port: int, timeout: float, ssl: _ssl.SSLContext | None) -> bool:
    corr = next(_correlation) & 0x7FFFFFFF
    body = struct.pack(">hhih", _API_VERSIONS, 0, corr, len(_CLIENT_ID)) + _CLIENT_ID
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ssl), timeout)
    try:
        writer.write(struct.pack(">i", len(body)) + body)
        await asyncio.wait_for(writer.drain(), timeout)
        size = struct.unpack(">i", await asyncio.wait_for(reader.readexactly(4), timeout))[0]
        reply = await asyncio.wait_for(reader.readexactly(size), timeout)
        return size >= 4 and bool(struct.unpack(">i", reply[:4])[0] == corr)
    finally:
        writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), timeout)


async def broker_reachable(bootstrap: str, timeout: float = 2.0, ssl: _ssl.SSLContext | None = None) -> bool:
    """True when any bootstrap server answers an ApiVersions request within `timeout` (over TLS with `ssl`)."""
    for host, port in bootstrap_hosts(bootstrap):
        try:
            if await _api_versions(host, port, timeout, ssl):
                return True
        except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error):
            continue
    return False
