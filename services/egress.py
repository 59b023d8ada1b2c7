"""Egress guard for outbound HTTP to user-supplied URLs (webhooks, input images).

A URL is allowed when its scheme is http/https, it names a host and no userinfo, and every
address its host resolves to is globally routable (not loopback, private, link-local, CGNAT,
multicast, unspecified, reserved or a cloud metadata address) or lies inside an allow-listed
network. The request then connects to the address that was checked, never resolving again, so a
DNS answer that changes between check and connect (DNS rebinding) cannot reach an internal host.
Redirects are never followed (a 3xx to an internal URL would bypass the check).
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anyio
import httpx

try:  # httpcore asks `import sniffio` on every lock it takes; anyio 4 no longer installs it.
    import sniffio  # noqa: F401
except ImportError:  # remember the miss so each of those imports fails at once, not by a path search
    sys.modules["sniffio"] = None  # type: ignore[assignment]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = ("http", "https")
METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressRefused(ValueError):
    """The URL or one of its addresses is not allowed; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FetchError(Exception):
    """A guarded fetch got no acceptable response (status, size or time limit)."""


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A checked URL and the address to connect to."""

    url: str
    scheme: str
    host: str  # as written in the URL (lower case, no brackets, no trailing dot)
    port: int
    address: IPAddress  # the checked address every request connects to
    addresses: tuple[IPAddress, ...] = ()

    @property
    def is_literal(self) -> bool:
        return _literal(self.host) is not None


def parse_networks(cidrs: Iterable[str] | str) -> tuple[Network, ...]:
    """CIDRs (host bits must be zero; a string is split on commas) → networks; raises ValueError
    naming the bad one."""
    networks = []
    for cidr in cidrs.split(",") if isinstance(cidrs, str) else cidrs:
        text = cidr.strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a network in CIDR notation ({exc})") from None
    return tuple(networks)


def check_url_syntax(url: str) -> urllib.parse.SplitResult:
    """http/https, a host, no userinfo, a valid port; raises EgressRefused."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EgressRefused(f"malformed URL ({exc})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise EgressRefused(f"scheme {parts.scheme or '(none)'!r} is not allowed (http or https only)")
    if not parts.hostname:
        raise EgressRefused("URL has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise EgressRefused("URL must not contain credentials (userinfo)")
    if port == 0:
        raise EgressRefused("port 0 is not allowed")
    return parts


def check_address(ip: IPAddress, allow: Sequence[Network] = ()) -> None:
    """Refuse non-public addresses unless inside an allow-listed network."""
    if any(ip.version == net.version and ip in net for net in allow):
        return
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        try:
            check_address(embedded, allow)
        except EgressRefused as exc:
            raise EgressRefused(f"{ip} embeds {exc.reason}") from None
        return
    kind = _non_public_kind(ip)
    if kind:
        raise EgressRefused(f"{ip} is {kind} address")


def _non_public_kind(ip: IPAddress) -> str | None:
    checks: tuple[tuple[bool, str], ...] = (
        (ip in METADATA, "a cloud metadata"),
        (ip.is_unspecified, "an unspecified"),
        (ip.is_loopback, "a loopback"),
        (ip.is_link_local, "a link-local"),
        (ip.version == 4 and ip in CGNAT, "a carrier-grade NAT (100.64.0.0/10)"),
        (ip.is_multicast, "a multicast"),
        (ip.is_reserved, "a reserved"),
        (ip.is_private, "a private"),
        (not ip.is_global, "a non-global"),
    )
    return next((kind for hit, kind in checks if hit), None)


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address inside an IPv4-mapped, 6to4 or NAT64 IPv6 address."""
    if ip.version != 6:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _host(parts: urllib.parse.SplitResult) -> str:
    return (parts.hostname or "").rstrip(".").lower()


def _literal(host: str) -> IPAddress | None:
    """An IP literal, including the legacy IPv4 forms inet_aton accepts (`127.1`, `0x7f.1`)."""
    try:
        return ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _default_port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def check_literal_host(url: str, allow: Sequence[Network] = ()) -> None:
    """Cheap synchronous check (no DNS): the syntax, and the address when the host is an IP
    literal or `localhost`. Hostnames are checked again after resolution by `resolve_checked`."""
    host = _host(check_url_syntax(url))
    if host == "localhost" or host.endswith(".localhost"):
        check_address(ipaddress.ip_address("127.0.0.1"), allow)
        return
    ip = _literal(host)
    if ip is not None:
        check_address(ip, allow)


async def resolve_checked(url: str, allow: Sequence[Network] = ()) -> ResolvedTarget:
    """Resolve the URL's host; every address must pass `check_address` (a name with one public
    and one internal address is refused). Raises EgressRefused, or OSError when DNS fails."""
    parts = check_url_syntax(url)
    host, port = _host(parts), _default_port(parts)
    literal = _literal(host)
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
    else:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        if not addresses:
            raise OSError(f"{host} did not resolve")
    for ip in addresses:
        check_address(ip, allow)
    return ResolvedTarget(url, parts.scheme.lower(), host, port, addresses[0], addresses)


class PinnedTransport(httpx.AsyncBaseTransport):
    """Sends every request to the checked address while the URL keeps the original hostname.

    httpx has no per-request "connect to this IP" option, so this is written by hand: the URL's
    host is swapped for the checked address just before the connection pool sees it (the pool
    then never resolves a name), the `Host` header was already set from the original URL by the
    client, and the `sni_hostname` extension makes TLS send the original name as SNI and verify
    the certificate against it. A client holding this transport serves one (scheme, host, port,
    address) only, so its keep-alive connections are never shared across hostnames.
    """

    def __init__(self, target: ResolvedTarget, inner: httpx.AsyncBaseTransport) -> None:
        self.target, self.inner = target, inner
        self._pinned: dict[str, httpx.URL] = {}  # URL → the same URL on the address (parsing is slow)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self.target
        request.url = self._pinned.get(str(request.url)) or self._pin(request.url)
        if target.scheme == "https" and not target.is_literal:
            request.extensions = {**request.extensions, "sni_hostname": target.host}
        return await self.inner.handle_async_request(request)

    def _pin(self, url: httpx.URL) -> httpx.URL:
        target = self.target
        if (url.scheme, (url.host or "").rstrip(".").lower(), url.port or _default_port_of(url)) != (
            target.scheme,
            target.host,
            target.port,
        ):
            raise EgressRefused(f"this client is pinned to {target.scheme}://{target.host}:{target.port}")
        pinned = url.copy_with(host=str(target.address))
        if len(self._pinned) >= 1024:
            self._pinned.clear()
        self._pinned[str(url)] = pinned
        return pinned

    async def aclose(self) -> None:
        await self.inner.aclose()


def _default_port_of(url: httpx.URL) -> int:
    return 443 if url.scheme == "https" else 80


def pinned_client(
    target: ResolvedTarget,
    timeout: float,
    *,
    max_connections: int = 16,
    keepalive_expiry: float = 30.0,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An AsyncClient for requests to `target`'s origin only, connecting to the checked address;
    no redirects, no proxies or settings from the environment (a proxy would resolve the name
    again). The caller closes it."""
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=keepalive_expiry
    )
    inner = httpx.AsyncHTTPTransport(verify=verify, limits=limits, trust_env=False, retries=0)
    return httpx.AsyncClient(
        transport=PinnedTransport(target, inner),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    )


async def fetch_bytes(
    url: str, allow: Sequence[Network] = (), *, max_bytes: int, timeout: float, verify: ssl.SSLContext | bool = True
) -> bytes:
    """A guarded GET: checked address, no redirects, at most `max_bytes` and `timeout` seconds in
    all (resolution included). Raises EgressRefused (not allowed) or FetchError (anything else)."""
    try:
        with anyio.fail_after(timeout):
            target = await resolve_checked(url, allow)
            async with pinned_client(target, timeout, max_connections=1, verify=verify) as client:
                return await _read_limited(client, url, max_bytes)
    except TimeoutError:
        raise FetchError(f"fetching took longer than {timeout:g} s") from None
    except OSError as exc:
        raise FetchError(f"could not resolve the host: {exc}") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: {exc}") from None


async def _read_limited(client: httpx.AsyncClient, url: str, max_bytes: int) -> bytes:
    async with client.stream("GET", url) as response:
        if response.status_code != 200:
            raise FetchError(f"HTTP {response.status_code} (redirects are not followed)")
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise FetchError(f"response of {declared} bytes exceeds the limit of {max_bytes}")
        chunks, size = [], 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"response exceeds the limit of {max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
