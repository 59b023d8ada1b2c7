"""Durable delivery records and their schedule in Redis.

A delivery is a hash `wan22:webhooks:delivery:<id>` (`record`: the JSON below, `attempts`: JSON
list, `claims`: how often a dispatcher took it, `status`) plus a member of the ZSET
`wan22:webhooks:schedule` scored by when it is next due. Claiming moves the score forward by a
lease instead of removing the member, so a delivery whose notifier dies mid-attempt becomes due
again when the lease runs out. Finished records stay (without their body) for `DONE_TTL_S` so a
redelivered event does not create the same deliveries twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from services.keys import Keys

DONE_TTL_S = 3600  # far longer than an event stays pending between fan-out and ack


class Attempt(msgspec.Struct, kw_only=True):
    at: float
    status: int = 0  # HTTP status; 0 = no response (refused, DNS, connect error, timeout)
    error: str = ""
    seconds: float = 0.0


class Delivery(msgspec.Struct, kw_only=True):
    id: str  # the `webhook-id`, the same for every attempt
    target: str  # "task" (the task's own webhook_url) or a subscription id
    url: str
    event: str
    task_id: str
    body: str  # the signed JSON body, fixed when the event was fanned out
    created_at: float
    entry_id: str = ""  # the `wan22:events` entry it came from
    replays: int = 0


@dataclass(slots=True)
class Claimed:
    delivery: Delivery
    attempts: list[Attempt]
    claims: int

    @property
    def lost(self) -> int:
        """Earlier claims that ended without a recorded attempt (the notifier died)."""
        return self.claims - 1 - len(self.attempts)


TASK_TARGET = "task"
_encoder = msgspec.json.Encoder()
_delivery = msgspec.json.Decoder(Delivery)
_attempts = msgspec.json.Decoder(list[Attempt])

# KEYS: schedule. ARGV: delivery key prefix, then (id, due, record) triples. Creates only what is
# not there yet, so fanning out the same event twice is harmless.
_CREATE = """
local created = 0
for i = 2, #ARGV, 3 do
  local key = ARGV[1] .. ARGV[i]
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'record', ARGV[i + 2], 'attempts', '[]', 'claims', 0, 'status', 'pending')
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
    created = created + 1
  end
end
return created
"""

# KEYS: schedule. ARGV: now, lease until, limit, delivery key prefix. Returns {id, record,
# attempts, claims} of each due delivery, leased until ARGV[2].
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  local fields = redis.call('HMGET', key, 'record', 'attempts', 'status')
  if fields[1] and fields[3] == 'pending' then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    local claims = redis.call('HINCRBY', key, 'claims', 1)
    out[#out + 1] = {id, fields[1], fields[2], claims}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""


def delivery_id(stream: str, entry_id: str, target: str) -> str:
    """Deterministic per (event entry, target): the idempotency key and the `webhook-id`."""
    return "msg_" + hashlib.sha256(f"{stream}|{entry_id}|{target}".encode()).hexdigest()[:32]


def encode(value: msgspec.Struct | list[Attempt]) -> str:
    return _encoder.encode(value).decode()


def decode_delivery(raw: str) -> Delivery:
    return _delivery.decode(raw)


def decode_attempts(raw: str | None) -> list[Attempt]:
    return _attempts.decode(raw) if raw else []


async def create(redis: Redis, keys: Keys, deliveries: list[Delivery], due: float) -> int:
    args: list[str | float] = [keys.webhook_delivery("")]
    for d in deliveries:
        args += [d.id, due, encode(d)]
    return int(await redis.eval(_CREATE, 1, keys.webhook_schedule, *args))


async def claim(redis: Redis, keys: Keys, now: float, lease_until: float, limit: int) -> list[Claimed]:
    rows = await redis.eval(_CLAIM, 1, keys.webhook_schedule, now, lease_until, limit, keys.webhook_delivery(""))
    return [
        Claimed(decode_delivery(record), decode_attempts(attempts), int(claims)) for _, record, attempts, claims in rows
    ]


async def next_due(redis: Redis, keys: Keys) -> float | None:
    rows = await redis.zrange(keys.webhook_schedule, 0, 0, withscores=True)
    return float(rows[0][1]) if rows else None


async def reschedule(redis: Redis, keys: Keys, c: Claimed, due: float) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.webhook_delivery(c.delivery.id), "attempts", encode(c.attempts))
        pipe.zadd(keys.webhook_schedule, {c.delivery.id: due})
        await pipe.execute()


async def finish(redis: Redis, keys: Keys, c: Claimed, status: str) -> None:
    """delivered / gone / dropped: off the schedule; the record stays a while, without its body."""
    async with redis.pipeline(transaction=True) as pipe:
        finish_in(pipe, keys, c, status)
        await pipe.execute()


def finish_in(pipe: Pipeline, keys: Keys, c: Claimed, status: str) -> None:
    key = keys.webhook_delivery(c.delivery.id)
    pipe.zrem(keys.webhook_schedule, c.delivery.id)
    pipe.hset(key, mapping={"status": status, "attempts": encode(c.attempts)})
    pipe.hdel(key, "record")
    pipe.expire(key, DONE_TTL_S)


async def put_back(redis: Redis, keys: Keys, ids: list[str], due: float) -> None:
    """Return claimed deliveries unattempted (endpoint busy, shutdown): due at `due`, and the
    claim does not count as lost."""
    if not ids:
        return
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(keys.webhook_schedule, dict.fromkeys(ids, due), xx=True)
        for delivery in ids:
            pipe.hincrby(keys.webhook_delivery(delivery), "claims", -1)
        await pipe.execute()


async def extend(redis: Redis, keys: Keys, delivery: str, lease_until: float) -> None:
    await redis.zadd(keys.webhook_schedule, {delivery: lease_until}, xx=True)


async def status(redis: Redis, keys: Keys, delivery: str) -> tuple[str | None, list[Attempt]]:
    state, attempts = await redis.hmget(keys.webhook_delivery(delivery), ["status", "attempts"])
    return state, decode_attempts(attempts)


async def scheduled(redis: Redis, keys: Keys) -> int:
    return int(await redis.zcard(keys.webhook_schedule))
