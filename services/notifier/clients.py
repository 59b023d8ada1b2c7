"""HTTP clients pinned to checked addresses, reused with keep-alive.

Each (origin, address) gets a few small clients ("lanes") of at most LANE_SIZE connections
rather than one client with `webhook_per_endpoint` connections: httpcore's pool re-examines every
connection (a poll() each) whenever a request starts or ends, so its cost per request grows with
the pool size and one pool of 100 connections is ten times slower than ten pools of ten.

Resolution results are cached for `dns_ttl_s` (getaddrinfo runs in a thread and would otherwise
dominate); a name is re-resolved and re-checked after that, so a receiver that moves gets new
clients while the old ones are closed once idle.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache

import anyio
import httpx

from services.egress import Network, ResolvedTarget, check_url_syntax, pinned_client, resolve_checked

Origin = tuple[str, str, int]
LANE_SIZE = 8


@lru_cache(maxsize=4096)
def origin_of(url: str) -> Origin:
    """(scheme, host, port) without DNS; raises EgressRefused for a malformed URL."""
    parts = check_url_syntax(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").rstrip(".").lower(), port


@dataclass(slots=True)
class Lane:
    client: httpx.AsyncClient
    busy: int = 0


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
        self.allow, self.timeout, self.dns_ttl_s, self.idle_s = allow, timeout, dns_ttl_s, idle_s
        self.lanes = math.ceil(per_endpoint / LANE_SIZE)
        self.lane_size = math.ceil(per_endpoint / self.lanes)
        self._resolved: dict[Origin, tuple[float, ResolvedTarget]] = {}
        self._locks: dict[Origin, anyio.Lock] = {}
        self._clients: dict[tuple[Origin, str], list[Lane]] = {}
        self._used: dict[tuple[Origin, str], float] = {}
        self._tls = httpx.create_ssl_context()  # one for all clients: loading CA roots is slow
        self.created = 0  # clients opened so far (tests check that refused URLs opened none)

    @asynccontextmanager
    async def client(self, url: str) -> AsyncIterator[httpx.AsyncClient]:
        """The least busy client for `url`. Raises EgressRefused (not allowed) or OSError (DNS)."""
        origin = origin_of(url)
        target = await self._target(origin, url)
        key = (origin, str(target.address))
        lanes = self._clients.get(key)
        if lanes is None:
            lanes = self._clients[key] = [self._open(target) for _ in range(self.lanes)]
        self._used[key] = time.monotonic()
        lane = min(lanes, key=lambda lane: lane.busy)
        lane.busy += 1
        try:
            yield lane.client
        finally:
            lane.busy -= 1

    def _open(self, target: ResolvedTarget) -> Lane:
        self.created += 1
        return Lane(pinned_client(target, self.timeout, max_connections=self.lane_size, verify=self._tls))

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
            lanes = self._clients.get(key, [])
            if any(lane.busy for lane in lanes):
                continue
            self._used.pop(key, None)
            self._clients.pop(key, None)
            for lane in lanes:
                await lane.client.aclose()

    async def aclose(self) -> None:
        lanes = [lane for group in self._clients.values() for lane in group]
        self._clients, self._used = {}, {}
        with anyio.CancelScope(shield=True):
            for lane in lanes:
                await lane.client.aclose()
