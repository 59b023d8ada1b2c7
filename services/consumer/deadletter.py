"""Dead-letter entries (with their error history) and replay onto the origin stream."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Literal

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT

from services.consumer import wire
from services.consumer.entry import META_PREFIX, Entry
from services.consumer.errors import Undecodable
from services.contracts import DeadLetter, ErrorRecord, RawField, dead_letter_decoder, encode, is_task_id, now
from services.keys import Keys

HISTORY_FIELD = f"{META_PREFIX}history"
REPLAY_FIELD = f"{META_PREFIX}replay_of"
PRESERVED_BYTES = 1 << 20  # of an entry's fields, in its dead letter
_history_encoder = msgspec.json.Encoder()
_history_decoder = msgspec.json.Decoder(list[ErrorRecord])


def history_from_fields(fields: dict[str, str]) -> list[ErrorRecord]:
    """Errors of earlier lives of a replayed entry (kept for the record, not for the budget); a
    history a producer forged is dropped, not trusted."""
    try:
        return _history_decoder.decode(fields.get(HISTORY_FIELD) or "[]")
    except msgspec.DecodeError:
        return []


def _original_fields(letter: DeadLetter) -> list[bytes]:
    """The entry's own fields as written (flat name, value, ...), without our meta fields."""
    if letter.raw_fields is not None:
        pairs = [(base64.b64decode(f.name_b64), base64.b64decode(f.value_b64)) for f in letter.raw_fields]
    else:
        pairs = [(k.encode(), v.encode()) for k, v in letter.fields.items()]
    meta = META_PREFIX.encode()
    return [part for name, value in pairs if not name.startswith(meta) for part in (name, value)]


def preserved_fields(entry: Entry) -> tuple[dict[str, str], list[RawField] | None, int]:
    """What a dead letter keeps of the entry: its fields (and their exact bytes when they are not
    text) up to PRESERVED_BYTES, and how many fields did not fit."""
    pairs = entry.raw if entry.raw is not None else [(k.encode(), v.encode()) for k, v in entry.fields.items()]
    kept, size = 0, 0
    for name, value in pairs:
        size += len(name) + len(value)
        if size > PRESERVED_BYTES:
            break
        kept += 1
    fields = dict(list(entry.fields.items())[:kept]) if kept < len(entry.fields) else entry.fields
    raw = None
    if entry.raw is not None:
        raw = [RawField(name_b64=_b64(n), value_b64=_b64(v)) for n, v in entry.raw[:kept]]
    return fields, raw, len(pairs) - kept


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


# KEYS: dlq, origin stream, attempts, dead-lettered marker. ARGV: group, entry id, task id, letter,
# marker ttl. One letter per entry: a second delivery failing the same way only acks.
DEAD_LETTER = """
local first = redis.call('SET', KEYS[4], '1', 'NX', 'EX', ARGV[5])
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('DEL', KEYS[3])
if not first then return false end
return redis.call('XADD', KEYS[1], '*', 'type', 'dead_letter', 'task_id', ARGV[3], 'payload', ARGV[4])
"""
MARKER_TTL_S = 7 * 24 * 3600  # longer than any entry waits in a pending list


async def dead_letter(
    redis: Redis,
    keys: Keys,
    group: str,
    entry: Entry,
    errors: list[ErrorRecord],
    reason: Literal["undecodable", "exhausted", "permanent"],
) -> str | None:
    """Write the dead-letter entry and ack the original in one atomic step; returns the DLQ id,
    or None when the entry had been dead-lettered already (then it is only acked)."""
    fields, raw_fields, dropped = preserved_fields(entry)
    task_id = entry.task_id if is_task_id(entry.task_id) else ""  # a producer's junk never names a task
    letter = DeadLetter(
        stream=entry.stream,
        group=group,
        entry_id=entry.id,
        fields=fields,
        attempts=len(errors),
        errors=errors,
        reason=reason,
        dead_at=now(),
        task_id=task_id,
        raw_fields=raw_fields,
        dropped_fields=dropped,
    )
    marker = keys.dead_lettered(entry.stream, entry.id)
    script_keys = [keys.dlq, entry.stream, keys.attempts(entry.stream, entry.id), marker]
    args: list[EncodableT] = [group, entry.id, task_id, encode(letter), MARKER_TTL_S]
    dlq_id = await redis.register_script(DEAD_LETTER)(keys=script_keys, args=args)
    return None if dlq_id is None else wire.text(dlq_id)


async def list_dead(redis: Redis, keys: Keys, count: int = 100) -> list[tuple[str, DeadLetter]]:
    """The oldest dead letters; an entry someone else wrote to the DLQ that is not one is skipped."""
    entries = await wire.xrange(redis, keys.dlq, count=count)
    letters = [(entry.id, entry.decode_or_none(dead_letter_decoder)) for entry in entries]
    return [(dlq_id, letter) for dlq_id, letter in letters if letter is not None]


async def get_dead(redis: Redis, keys: Keys, dlq_id: str) -> DeadLetter | None:
    """The dead letter, None when there is none; Undecodable for an entry that is not one."""
    entries = await wire.xrange(redis, keys.dlq, dlq_id, dlq_id)
    if not entries:
        return None
    if (letter := entries[0].decode_or_none(dead_letter_decoder)) is None:
        raise Undecodable(f"{dlq_id} is not a dead letter the services wrote")
    return letter


async def replay(
    redis: Redis, keys: Keys, dlq_id: str, also: Callable[[Pipeline, DeadLetter], None] | None = None
) -> str | None:
    """Put a dead-lettered entry back on its origin stream with a fresh attempt budget (a new
    entry id) and its error history in `_history`; remove it from the DLQ. `also` adds commands to
    the same transaction (e.g. reopening the task). Returns the new id, or None when `dlq_id` is
    not in the DLQ; Undecodable when the entry is not a dead letter."""
    letter = await get_dead(redis, keys, dlq_id)
    if letter is None:
        return None
    history = history_from_fields(letter.fields) + letter.errors
    meta = [HISTORY_FIELD.encode(), _history_encoder.encode(history), REPLAY_FIELD.encode(), dlq_id.encode()]
    async with redis.pipeline(transaction=True) as pipe:
        pipe.execute_command("XADD", letter.stream, "*", *_original_fields(letter), *meta)
        pipe.xdel(keys.dlq, dlq_id)
        if also is not None:
            also(pipe, letter)
        new_id, *_ = await pipe.execute()
    return str(new_id)


async def purge(redis: Redis, keys: Keys, dlq_ids: list[str]) -> int:
    return int(await redis.xdel(keys.dlq, *dlq_ids)) if dlq_ids else 0
