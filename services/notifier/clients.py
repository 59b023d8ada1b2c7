"""Pinned HTTP sessions, one per (origin, checked address), reused with keep-alive.

Resolution results are cached for `dns_ttl_s` (getaddrinfo runs in a thread and would otherwise
dominate); a name is re-resolved and re-checked after that, so a receiver that moves gets a new
session while the old one is closed once idle.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio
import httpx

from services.egress import Network, ResolvedTarget, resolve_checked
from services.notifier.pinned import Origin, PinnedSession, origin_of

USER_AGENT = "wan22-notifier/1"


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
        self._sessions: dict[tuple[Origin, str], PinnedSession] = {}
        self._used: dict[tuple[Origin, str], float] = {}
        # One context for all sessions (loading CA roots is slow); httpx's keeps certifi's roots.
        self._tls = httpx.create_ssl_context()
        self.created = 0  # sessions opened so far (tests check that refused URLs opened none)

    async def session(self, url: str) -> PinnedSession:
        """The session for `url`. Raises EgressRefused (not allowed), OSError (DNS) or
        TimeoutError (resolution took longer than the attempt's timeout)."""
        origin = origin_of(url)
        target = await self._target(origin, url)
        key = (origin, str(target.address))
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._open(target)
        self._used[key] = time.monotonic()
        return session

    def _open(self, target: ResolvedTarget) -> PinnedSession:
        self.created += 1
        return PinnedSession(target, max_connections=self.per_endpoint, tls=self._tls, user_agent=USER_AGENT)

    async def _target(self, origin: Origin, url: str) -> ResolvedTarget:
        cached = self._resolved.get(origin)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        lock = self._locks.setdefault(origin, anyio.Lock())
        with anyio.fail_after(self.timeout):
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
            session = self._sessions.get(key)
            if session is not None and session.busy:
                continue
            self._used.pop(key, None)
            self._sessions.pop(key, None)
            if session is not None:
                await session.aclose()

    async def aclose(self) -> None:
        sessions = list(self._sessions.values())
        self._sessions, self._used = {}, {}
        with anyio.CancelScope(shield=True):
            for session in sessions:
                await session.aclose()
