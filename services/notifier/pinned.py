"""The notifier's HTTP client: aiohttp sessions pinned to an address the egress guard checked.

aiohttp rather than httpx (the project's general client) because a webhook delivery is little
more than one POST: httpx, httpcore and h11 spend about 1.3 ms of CPU per request here, aiohttp
(C parser, C headers) about 0.25 ms, so with httpx the client alone capped deliveries per second.

The guarantees of `services.egress.pinned_client` hold the same way:
- the session's resolver answers a lookup of the target's name with the checked address and
  refuses any other name; an IP literal is connected to as written (it is the checked address);
- the `Host` header, TLS SNI and the certificate check use the URL's name (aiohttp takes them
  from the URL, which keeps the name);
- redirects are not followed, proxies and settings from the environment are not used, and no
  cookies are kept between deliveries.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from functools import lru_cache

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from services.egress import EgressRefused, ResolvedTarget, check_url_syntax

Origin = tuple[str, str, int]
READ_LIMIT = 64 * 1024  # read at most this much of a response (a larger one closes the connection)
KEEP = 800  # bytes of a response kept for the error message


@lru_cache(maxsize=4096)
def origin_of(url: str) -> Origin:
    """(scheme, host, port) without DNS; raises EgressRefused for a malformed URL."""
    parts = check_url_syntax(url)
    scheme = parts.scheme.lower()
    port = parts.port or (443 if scheme == "https" else 80)
    return scheme, (parts.hostname or "").rstrip(".").lower(), port


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    text: str  # the start of the body
    retry_after: str | None


class PinnedResolver(AbstractResolver):
    """Every lookup of the target's name gets the checked address; any other name is refused."""

    def __init__(self, target: ResolvedTarget) -> None:
        self.target = target
        self.names = {target.host, _ascii(target.host)}

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        target = self.target
        if host.rstrip(".").lower() not in self.names or port != target.port:
            raise EgressRefused(f"this client is pinned to {target.scheme}://{target.host}:{target.port}")
        address = str(target.address)
        ip_family = socket.AF_INET6 if target.address.version == 6 else socket.AF_INET
        return [{"hostname": host, "host": address, "port": port, "family": ip_family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


def _ascii(host: str) -> str:
    try:
        return host.encode("idna").decode()
    except UnicodeError:
        return host


class PinnedSession:
    """Requests to `target`'s origin only, over keep-alive connections to the checked address.
    Open it inside the event loop; the owner closes it."""

    def __init__(
        self,
        target: ResolvedTarget,
        *,
        max_connections: int = 16,
        keepalive_s: float = 30.0,
        tls: ssl.SSLContext | None = None,
        user_agent: str = "",
    ) -> None:
        self.target, self.busy = target, 0
        self.origin: Origin = (target.scheme, target.host, target.port)
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(target),
            use_dns_cache=False,  # the resolver answers from memory; a cache would only outlive it
            limit=max_connections,
            limit_per_host=0,
            keepalive_timeout=keepalive_s,
            ssl=tls if tls is not None else True,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=False,
            skip_auto_headers=("accept-encoding",),  # bodies are read raw: ask for no encoding
            headers={"user-agent": user_agent} if user_agent else None,
        )

    async def post(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Reply:
        """POST within `timeout` seconds (waiting for a connection included), not following
        redirects; raises EgressRefused for another origin, aiohttp's errors or TimeoutError."""
        if origin_of(url) != self.origin:
            raise EgressRefused(f"this client is pinned to {'://'.join(self.origin[:2])}:{self.origin[2]}")
        limit = aiohttp.ClientTimeout(total=timeout)
        self.busy += 1
        try:
            async with self.session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=limit
            ) as response:
                text = await _read_some(response)
                return Reply(response.status, text, response.headers.get("retry-after"))
        finally:
            self.busy -= 1

    async def aclose(self) -> None:
        await self.session.close()


async def _read_some(response: aiohttp.ClientResponse) -> str:
    """Up to READ_LIMIT bytes of the body (read so the connection can be reused); a larger body
    is left unread and aiohttp closes its connection instead of reusing it."""
    chunks, size = [], 0
    while size < READ_LIMIT and (chunk := await response.content.read(READ_LIMIT - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)[:KEEP].decode("utf-8", "replace")
