"""The webhook dead-letter stream (`wan22:webhooks:dlq`): deliveries that used up the schedule
or were refused, with every attempt's status and error; `wan22 webhooks dlq list/replay`."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from services.consumer import Undecodable, wire
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
    """The oldest webhook dead letters; an entry someone else wrote there is skipped."""
    entries = await wire.xrange(redis, keys.webhook_dlq, count=count)
    letters = [(entry.id, entry.decode_or_none(_decoder)) for entry in entries]
    return [(dlq_id, letter) for dlq_id, letter in letters if letter is not None]


async def replay(redis: Redis, keys: Keys, dlq_id: str) -> str | None:
    """Schedule the delivery again now with a fresh attempt budget and the same `webhook-id`
    (receivers dedupe on it); remove it from the DLQ. None when `dlq_id` is not there;
    Undecodable when the entry is not a webhook dead letter."""
    entries = await wire.xrange(redis, keys.webhook_dlq, dlq_id, dlq_id)
    if not entries:
        return None
    if (letter := entries[0].decode_or_none(_decoder)) is None:
        raise Undecodable(f"{dlq_id} is not a webhook dead letter the notifier wrote")
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
    newest = await wire.xrevrange(redis, keys.webhook_dlq, count=1)
    if not newest:
        return []
    replayed, start = [], "-"
    while entries := await wire.xrange(redis, keys.webhook_dlq, start, newest[0].id, count=500):
        for entry in entries:
            if entry.decode_or_none(_decoder) is not None and await replay(redis, keys, entry.id):
                replayed.append(entry.id)
        start = "(" + entries[-1].id  # what is not a letter stays behind
    return replayed
