"""Webhook subscriptions (`wan22 webhooks add/list/remove`) and the deployment's signing secret.

Subscriptions live in one hash (`wan22:webhooks`, id → JSON); they are few, so the notifier
reads them all and caches them for a second.
"""

from __future__ import annotations

import secrets as random_secrets
import time

import msgspec
from redis.asyncio import Redis

from services.contracts import now
from services.keys import Keys
from services.notifier.payload import DEFAULT_EVENTS
from services.notifier.signing import generate_secret
from services.redisconn import text_hash


class Subscription(msgspec.Struct, kw_only=True):
    id: str
    url: str
    events: list[str]
    secrets: list[str]  # newest first; every one signs (rotation)
    created_at: float = 0.0
    disabled_at: float = 0.0
    disabled_reason: str = ""

    @property
    def enabled(self) -> bool:
        return not self.disabled_at

    def wants(self, event: str) -> bool:
        return self.enabled and event in self.events


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Subscription)


def new_id() -> str:
    return "wh_" + random_secrets.token_hex(8)


async def add(redis: Redis, keys: Keys, url: str, events: list[str] | None, secret: str | None) -> Subscription:
    sub = Subscription(
        id=new_id(),
        url=url,
        events=sorted(events or DEFAULT_EVENTS),
        secrets=[secret or generate_secret()],
        created_at=now(),
    )
    await save(redis, keys, sub)
    return sub


async def save(redis: Redis, keys: Keys, sub: Subscription) -> None:
    await redis.hset(keys.webhooks, sub.id, _encoder.encode(sub))


async def get(redis: Redis, keys: Keys, sub_id: str) -> Subscription | None:
    raw = await redis.hget(keys.webhooks, sub_id)
    return _decoder.decode(raw) if raw else None


async def all_subscriptions(redis: Redis, keys: Keys) -> list[Subscription]:
    raw = await redis.hgetall(keys.webhooks)
    return sorted((_decoder.decode(v) for v in raw.values()), key=lambda s: (s.created_at, s.id))


def decode_all(raw: dict[str, str]) -> dict[str, Subscription]:
    return {k: _decoder.decode(v) for k, v in raw.items()}


async def remove(redis: Redis, keys: Keys, sub_id: str) -> bool:
    return bool(await redis.hdel(keys.webhooks, sub_id))


async def disable(redis: Redis, keys: Keys, sub_id: str, reason: str) -> None:
    sub = await get(redis, keys, sub_id)
    if sub is not None and sub.enabled:
        sub.disabled_at, sub.disabled_reason = now(), reason
        await save(redis, keys, sub)


async def rotate(redis: Redis, keys: Keys, sub_id: str, secret: str | None, *, drop_old: bool) -> Subscription | None:
    """Put a new secret first (old ones keep signing until `drop_old`), or with `drop_old` alone
    keep only the newest."""
    sub = await get(redis, keys, sub_id)
    if sub is None:
        return None
    if secret or not drop_old:
        sub.secrets.insert(0, secret or generate_secret())
    if drop_old:
        sub.secrets = sub.secrets[:1]
    await save(redis, keys, sub)
    return sub


async def enable(redis: Redis, keys: Keys, sub_id: str) -> Subscription | None:
    sub = await get(redis, keys, sub_id)
    if sub is not None:
        sub.disabled_at, sub.disabled_reason = 0.0, ""
        await save(redis, keys, sub)
    return sub


async def deployment_secrets(redis: Redis, keys: Keys, configured: list[str]) -> list[str]:
    """Secrets for tasks' own webhook_url: WAN22_WEBHOOK_SECRET when set, otherwise one generated
    on first use and kept in Redis (`wan22 webhooks secret` shows it)."""
    if configured:
        return configured
    await redis.set(keys.webhook_secret, generate_secret(), nx=True)
    return [str(await redis.get(keys.webhook_secret))]


class SubscriptionCache:
    """All subscriptions, re-read at most every `ttl_s` (CLI changes apply within that time)."""

    def __init__(self, redis: Redis, keys: Keys, ttl_s: float = 1.0) -> None:
        self.redis, self.keys, self.ttl_s = redis, keys, ttl_s
        self._subs: dict[str, Subscription] = {}
        self._expires = 0.0

    async def get(self) -> dict[str, Subscription]:
        if time.monotonic() >= self._expires:
            self._subs = decode_all(await text_hash(self.redis, self.keys.webhooks))
            self._expires = time.monotonic() + self.ttl_s
        return self._subs

    def invalidate(self) -> None:
        self._expires = 0.0
