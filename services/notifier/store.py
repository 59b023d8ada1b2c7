"""Durable delivery records and their schedule in Redis.

A delivery is a hash `wan22:webhooks:delivery:<id>` (`record`: the JSON below, `attempts`: JSON
list, `claims`: how often a dispatcher took it, `status`) plus a member of the ZSET
`wan22:webhooks:schedule` scored by when it is next due. Claiming moves the score forward by a
lease instead of removing the member, so a delivery whose notifier dies mid-attempt becomes due
again when the lease runs out. Finished records stay (without their body) for `done_ttl_s`
(`WAN22_WEBHOOK_RECORD_TTL_S`): a redelivered event does not create the same deliveries twice,
and the dashboard's task page shows what was delivered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, cast

import msgspec
from redis.asyncio import Redis

from services.keys import Keys

DONE_TTL_S = 7 * 24 * 3600  # the default of `webhook_record_ttl_s`


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

# KEYS: schedule, webhook DLQ. ARGV: delivery key prefix, TTL of finished records, then
# (op, id, attempts, arg, task id) groups; see `Outcome`. Finished records lose their body and
# stay until the TTL so a redelivered event is still recognised.
_APPLY = """
local dead = {}
for i = 3, #ARGV, 5 do
  local op, id, attempts, arg = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local key = ARGV[1] .. id
  if op == 'retry' then
    redis.call('HSET', key, 'attempts', attempts)
    redis.call('ZADD', KEYS[1], arg, id)
  else
    local status = arg
    if op == 'dead' then
      status = 'dead'
      if redis.call('HGET', key, 'status') ~= 'dead' then  -- applied twice: one letter only
        local fields = {'type', 'webhook_dead_letter', 'task_id', ARGV[i + 4], 'payload', arg}
        dead[#dead + 1] = redis.call('XADD', KEYS[2], '*', unpack(fields))
      end
    end
    redis.call('ZREM', KEYS[1], id)
    redis.call('HSET', key, 'status', status, 'attempts', attempts)
    redis.call('HDEL', key, 'record')
    redis.call('EXPIRE', key, ARGV[2])
  end
end
return dead
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


@dataclass(slots=True)
class Outcome:
    """What an attempt decided: `retry` (arg: due time), `finish` (arg: delivered / gone /
    dropped) or `dead` (arg: the dead-letter payload)."""

    op: Literal["retry", "finish", "dead"]
    claimed: Claimed
    arg: str | float


async def apply(redis: Redis, keys: Keys, outcomes: list[Outcome], done_ttl_s: int = DONE_TTL_S) -> list[str]:
    """Record many outcomes in one script call (each one atomically); returns the dead-letter ids."""
    args: list[str | float] = [keys.webhook_delivery(""), done_ttl_s]
    for o in outcomes:
        args += [o.op, o.claimed.delivery.id, encode(o.claimed.attempts), o.arg, o.claimed.delivery.task_id]
    return [str(i) for i in await redis.eval(_APPLY, 2, keys.webhook_schedule, keys.webhook_dlq, *args)]


async def finish(redis: Redis, keys: Keys, c: Claimed, status: str) -> None:
    await apply(redis, keys, [Outcome("finish", c, status)])


async def put_back(redis: Redis, keys: Keys, due: dict[str, float]) -> None:
    """Return claimed deliveries unattempted (endpoint busy, shutdown), each due at its time; the
    claim does not count as lost."""
    if not due:
        return
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(keys.webhook_schedule, due, xx=True)
        for delivery in due:
            pipe.hincrby(keys.webhook_delivery(delivery), "claims", -1)
        await pipe.execute()


async def extend(redis: Redis, keys: Keys, delivery: str, lease_until: float) -> None:
    await redis.zadd(keys.webhook_schedule, {delivery: lease_until}, xx=True)


async def status(redis: Redis, keys: Keys, delivery: str) -> tuple[str | None, list[Attempt]]:
    values = await redis.hmget(keys.webhook_delivery(delivery), ["status", "attempts"])
    state, attempts = cast(list[str | None], values)  # clients from `connect` decode replies
    return state, decode_attempts(attempts)


async def scheduled(redis: Redis, keys: Keys) -> int:
    return int(await redis.zcard(keys.webhook_schedule))
