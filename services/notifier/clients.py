"""HTTP clients pinned to checked addresses, one per (origin, address), reused with keep-alive.

Resolution results are cached for `dns_ttl_s` (getaddrinfo runs in a thread and would otherwise
dominate); a name is re-resolved and re-checked after that, so a receiver that moves gets a new
client while the old one is closed once idle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import httpx

from services.egress import Network, ResolvedTarget, check_url_syntax, pinned_client, resolve_checked

Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin:
    """(scheme, host, port) without DNS; raises EgressRefused for a malformed URL."""
    parts = check_url_syntax(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").rstrip(".").lower(), port


class ClientPool:
    def __init__(
        self,
        allow: Sequence[Network],
        timeout: float,
        per_endpoint: int,
        *,
        dns_ttl_s: float = 30.0,
        idle_s: float = 60.0,
    ) -> None:
        self.allow, self.timeout, self.per_endpoint = allow, timeout, per_endpoint
        self.dns_ttl_s, self.idle_s = dns_ttl_s, idle_s
        self._resolved: dict[Origin, tuple[float, ResolvedTarget]] = {}
        self._locks: dict[Origin, anyio.Lock] = {}
        self._clients: dict[tuple[Origin, str], httpx.AsyncClient] = {}
        self._used: dict[tuple[Origin, str], float] = {}
        self.created = 0  # clients opened so far (tests check that refused URLs opened none)

    async def client_for(self, url: str) -> httpx.AsyncClient:
        """Raises EgressRefused (not allowed) or OSError (DNS failed)."""
        origin = origin_of(url)
        target = await self._target(origin, url)
        key = (origin, str(target.address))
        client = self._clients.get(key)
        if client is None:
            client = pinned_client(target, self.timeout, max_connections=self.per_endpoint)
            self._clients[key] = client
            self.created += 1
        self._used[key] = time.monotonic()
        return client

    async def _target(self, origin: Origin, url: str) -> ResolvedTarget:
        cached = self._resolved.get(origin)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        lock = self._locks.setdefault(origin, anyio.Lock())
        async with lock:  # one resolution per name at a time, not one per waiting delivery
            cached = self._resolved.get(origin)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            target = await resolve_checked(url, self.allow)
            self._resolved[origin] = (time.monotonic() + self.dns_ttl_s, target)
            return target

    async def close_idle(self) -> None:
        cutoff = time.monotonic() - self.idle_s
        for key in [k for k, used in self._used.items() if used < cutoff]:
            self._used.pop(key, None)
            client = self._clients.pop(key, None)
            if client is not None:
                await client.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        self._used.clear()
        for client in clients:
            with anyio.CancelScope(shield=True):
                await client.aclose()
