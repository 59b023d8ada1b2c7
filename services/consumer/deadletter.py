"""Dead-letter entries (with their error history) and replay onto the origin stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from services.consumer.entry import META_PREFIX, Entry
from services.contracts import DeadLetter, ErrorRecord, dead_letter_decoder, encode, now
from services.keys import Keys

HISTORY_FIELD = f"{META_PREFIX}history"
REPLAY_FIELD = f"{META_PREFIX}replay_of"
_history_encoder = msgspec.json.Encoder()
_history_decoder = msgspec.json.Decoder(list[ErrorRecord])


def history_from_fields(fields: dict[str, str]) -> list[ErrorRecord]:
    """Errors of earlier lives of a replayed entry (kept for the record, not for the budget)."""
    raw = fields.get(HISTORY_FIELD)
    return _history_decoder.decode(raw) if raw else []


async def dead_letter(
    redis: Redis,
    keys: Keys,
    group: str,
    entry: Entry,
    errors: list[ErrorRecord],
    reason: Literal["undecodable", "exhausted", "permanent"],
) -> str:
    """Write the dead-letter entry and ack the original in one transaction; returns the DLQ id."""
    letter = DeadLetter(
        stream=entry.stream,
        group=group,
        entry_id=entry.id,
        fields=entry.fields,
        attempts=len(errors),
        errors=errors,
        reason=reason,
        dead_at=now(),
        task_id=entry.task_id,
    )
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(keys.dlq, {"type": "dead_letter", "task_id": entry.task_id, "payload": encode(letter)})
        pipe.xack(entry.stream, group, entry.id)
        pipe.delete(keys.attempts(entry.stream, entry.id))
        results = await pipe.execute()
    return str(results[0])


async def list_dead(redis: Redis, keys: Keys, count: int = 100) -> list[tuple[str, DeadLetter]]:
    rows = await redis.xrange(keys.dlq, count=count)
    return [(entry_id, dead_letter_decoder.decode(fields["payload"])) for entry_id, fields in rows]


async def get_dead(redis: Redis, keys: Keys, dlq_id: str) -> DeadLetter | None:
    rows = await redis.xrange(keys.dlq, min=dlq_id, max=dlq_id)
    return dead_letter_decoder.decode(rows[0][1]["payload"]) if rows else None


async def replay(
    redis: Redis, keys: Keys, dlq_id: str, also: Callable[[Pipeline, DeadLetter], None] | None = None
) -> str | None:
    """Put a dead-lettered entry back on its origin stream with a fresh attempt budget (a new
    entry id) and its error history in `_history`; remove it from the DLQ. `also` adds commands to
    the same transaction (e.g. reopening the task). Returns the new id, or None when `dlq_id` is
    not in the DLQ."""
    letter = await get_dead(redis, keys, dlq_id)
    if letter is None:
        return None
    history = history_from_fields(letter.fields) + letter.errors
    fields = {k: v for k, v in letter.fields.items() if not k.startswith(META_PREFIX)}
    fields[HISTORY_FIELD] = _history_encoder.encode(history).decode()
    fields[REPLAY_FIELD] = dlq_id
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(letter.stream, fields)
        pipe.xdel(keys.dlq, dlq_id)
        if also is not None:
            also(pipe, letter)
        new_id, *_ = await pipe.execute()
    return str(new_id)


async def purge(redis: Redis, keys: Keys, dlq_ids: list[str]) -> int:
    return int(await redis.xdel(keys.dlq, *dlq_ids)) if dlq_ids else 0
