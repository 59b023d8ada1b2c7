"""The webhook dead-letter stream (`wan22:webhooks:dlq`): deliveries that used up the schedule
or were refused, with every attempt's status and error; `wan22 webhooks dlq list/replay`."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from services.contracts import now
from services.keys import Keys
from services.notifier import store
from services.notifier.store import Attempt, Claimed, Delivery, Outcome


class WebhookDeadLetter(msgspec.Struct, kw_only=True):
    delivery: Delivery
    attempts: list[Attempt]
    reason: str  # exhausted | refused | lost
    dead_at: float


_decoder = msgspec.json.Decoder(WebhookDeadLetter)


def letter_payload(c: Claimed, reason: str) -> str:
    return store.encode(WebhookDeadLetter(delivery=c.delivery, attempts=c.attempts, reason=reason, dead_at=now()))


async def dead_letter(redis: Redis, keys: Keys, c: Claimed, reason: str) -> str:
    """Write the letter and take the delivery off the schedule atomically; returns its id."""
    [dlq_id] = await store.apply(redis, keys, [Outcome("dead", c, letter_payload(c, reason))])
    return dlq_id


async def list_dead(redis: Redis, keys: Keys, count: int = 1000) -> list[tuple[str, WebhookDeadLetter]]:
    rows = await redis.xrange(keys.webhook_dlq, count=count)
    return [(entry_id, _decoder.decode(fields["payload"])) for entry_id, fields in rows]


async def replay(redis: Redis, keys: Keys, dlq_id: str) -> str | None:
    """Schedule the delivery again now with a fresh attempt budget and the same `webhook-id`
    (receivers dedupe on it); remove it from the DLQ. None when `dlq_id` is not there."""
    rows = await redis.xrange(keys.webhook_dlq, min=dlq_id, max=dlq_id)
    if not rows:
        return None
    letter = _decoder.decode(rows[0][1]["payload"])
    delivery = letter.delivery
    delivery.replays += 1
    key = keys.webhook_delivery(delivery.id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(key)
        pipe.hset(key, mapping={"record": store.encode(delivery), "attempts": "[]", "claims": 0, "status": "pending"})
        pipe.zadd(keys.webhook_schedule, {delivery.id: now()})
        pipe.xdel(keys.webhook_dlq, dlq_id)
        await pipe.execute()
    return delivery.id


async def replay_all(redis: Redis, keys: Keys) -> list[str]:
    """Replay everything dead-lettered up to now (not what dies while this runs)."""
    newest = await redis.xrevrange(keys.webhook_dlq, count=1)
    if not newest:
        return []
    replayed = []
    while rows := await redis.xrange(keys.webhook_dlq, min="-", max=newest[0][0], count=500):
        for dlq_id, _ in rows:
            if await replay(redis, keys, dlq_id):
                replayed.append(dlq_id)
    return replayed
