"""Redis URLs: `redis://`, `rediss://` and `unix://` as redis-py reads them, and
`redis+sentinel://[[user]:password@]host1[:port],host2[:port],.../<master>[/<db>][?sentinel_password=…]`
for a primary that Redis Sentinel elects (the sentinels' port defaults to 26379)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

PLAIN_SCHEMES = ("redis://", "rediss://", "unix://")
SENTINEL_SCHEME = "redis+sentinel://"
SENTINEL_PORT = 26379
_FORM = "redis+sentinel://host:26379,host:26379/<master>[/<db>]"


class RedisUrlError(ValueError):
    """The URL cannot name a Redis; the message says why (never with the password)."""


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None  # of the primary and its replicas
    sentinel_password: str | None = None  # of the sentinels, when they have one of their own


def is_sentinel(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def check(url: str) -> None:
    """Raise RedisUrlError unless `connect` can use the URL."""
    if is_sentinel(url):
        parse_sentinel(url)
    elif not url.startswith(PLAIN_SCHEMES):
        raise RedisUrlError("must start with redis://, rediss://, unix:// or redis+sentinel://")


def parse_sentinel(url: str) -> SentinelUrl:
    if not is_sentinel(url):
        raise RedisUrlError(f"not a {SENTINEL_SCHEME} URL")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [IPv6 bracket
        raise RedisUrlError(str(exc)) from None
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    master, db = _master_and_db(parts.path)
    return SentinelUrl(
        sentinels=tuple(_address(host) for host in hosts.split(",")),
        master=master,
        db=db,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_password=_sentinel_password(parts.query),
    )


def _address(host: str) -> tuple[str, int]:
    if not host:
        raise RedisUrlError(f"needs one or more sentinels, comma-separated: {_FORM}")
    if host.startswith("["):  # [IPv6]:port
        name, _, rest = host[1:].partition("]")
    else:
        name, _, port = host.partition(":")
        rest = f":{port}" if port else ""
    if not name or (rest and not rest.startswith(":")):
        raise RedisUrlError(f"sentinel {host!r} is not host[:port]")
    port = rest[1:]
    if not port:
        return name, SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"sentinel {host!r}: the port must be a number from 1 to 65535")
    return name, int(port)


def _master_and_db(path: str) -> tuple[str, int]:
    master, _, db = path.removeprefix("/").partition("/")
    if not master:
        raise RedisUrlError(f"needs the master name the sentinels monitor: {_FORM}")
    db = db.removesuffix("/")
    if db and not db.isdigit():
        raise RedisUrlError(f"the database after the master name must be a number, not {db!r}")
    return unquote(master), int(db or 0)


def _sentinel_password(query: str) -> str | None:
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - {"sentinel_password"})
    if unknown:
        raise RedisUrlError(f"unknown option {unknown[0]!r} (only sentinel_password is understood)")
    values = options.get("sentinel_password", [""])
    return values[-1] or None
