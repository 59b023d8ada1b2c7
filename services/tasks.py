"""The task state machine in Redis: every transition that must be atomic is one Lua script, so a
task reaches exactly one terminal state and exactly one terminal event, whoever races.

MULTI cannot branch on what it reads (an idempotency key, the current status), so the
conditional transitions are scripts; each is still one atomic step on the server.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.typing import EncodableT, FieldT

from services.accept import Acceptor, AcceptResult, Wait
from services.consumer.deadletter import replay
from services.contracts import (
    TERMINAL,
    Cancelled,
    DeadLetter,
    Event,
    Failed,
    Job,
    Rejected,
    Retrying,
    TaskState,
    encode,
    event_entry,
    event_type,
    now,
    state_from_hash,
    state_to_hash,
)
from services.keys import Keys
from services.redisconn import text_hash

EXPIRED_ERROR = "expired: still queued past its deadline"
_TERMINAL_LUA = "{" + ", ".join(f"['{s}']=true" for s in sorted(TERMINAL)) + "}"

# KEYS: answered marker ('' = none), task hash ('' = do not record a state), events stream.
# ARGV: marker ttl, event payload, task id, task ttl, hash k/v...
# The `rejected` event once per request entry (a redelivery finds the marker); the task hash only
# for a task id not used yet (a duplicate id must not overwrite the task that owns it).
REJECT = """
if KEYS[1] ~= '' and not redis.call('SET', KEYS[1], ARGV[3], 'NX', 'EX', ARGV[1]) then return 0 end
if KEYS[2] ~= '' and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 5))
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('XADD', KEYS[3], '*', 'type', 'rejected', 'task_id', ARGV[3], 'payload', ARGV[2])
return 1
"""

# The expiry of a queued task past its deadline, shared by CLAIM and EXPIRE: `failed` with the
# `expired` event in the same step, only while the task is still `queued`; 1 when it expired.
# Uses KEYS[1] task hash, KEYS[2] events, KEYS[3] deadlines; ARGV[3] now, ARGV[4] task id,
# ARGV[5] failed payload.
_EXPIRE_LUA = (
    """
local function expire_if_due(status)
  if status ~= 'queued' then return 0 end
  local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline_at') or '0') or 0
  if deadline <= 0 or deadline > tonumber(ARGV[3]) then return 0 end
  redis.call('HSET', KEYS[1], 'status', 'failed', 'error', '"""
    + EXPIRED_ERROR
    + """', 'updated_at', ARGV[3])
  redis.call('XADD', KEYS[2], '*', 'type', 'failed', 'task_id', ARGV[4], 'payload', ARGV[5])
  redis.call('ZREM', KEYS[3], ARGV[4])
  return 1
end
"""
)

# KEYS: task hash, events stream, deadlines. ARGV: (unused), (unused), now, task id, failed payload.
# Run by ingest for the due members of the deadlines set; a task no longer queued leaves the set.
EXPIRE = (
    _EXPIRE_LUA
    + """
local status = redis.call('HGET', KEYS[1], 'status')
if expire_if_due(status) == 1 then return 1 end
if status ~= 'queued' then redis.call('ZREM', KEYS[3], ARGV[4]) end
return 0
"""
)

# KEYS: task hash, events stream. ARGV: event type, task id, event payload, task ttl, hash k/v...
# Sets a terminal state only if none is set yet; returns 1 when this call made the transition.
FINISH = f"""
local terminal = {_TERMINAL_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if status and terminal[status] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
if not status then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
redis.call('XADD', KEYS[2], '*', 'type', ARGV[1], 'task_id', ARGV[2], 'payload', ARGV[3])
return 1
"""

# KEYS: task hash, events stream, cancel flag. ARGV: cancelled payload, now, flag ttl, task id.
# queued → cancelled at once; running/retrying → flag for the worker; else the status.
CANCEL = f"""
local terminal = {_TERMINAL_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 'missing' end
if terminal[status] then return 'already_' .. status end
redis.call('SET', KEYS[3], '1', 'EX', ARGV[3])
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'error', 'cancelled before it started', 'updated_at', ARGV[2])
  redis.call('XADD', KEYS[2], '*', 'type', 'cancelled', 'task_id', ARGV[4], 'payload', ARGV[1])
  return 'cancelled'
end
return 'cancelling'
"""

# KEYS: task hash, events stream. ARGV: error, now, event payload, task id. Between attempts.
RETRYING = f"""
local terminal = {_TERMINAL_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if status and terminal[status] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'retrying', 'error', ARGV[1], 'updated_at', ARGV[2])
redis.call('XADD', KEYS[2], '*', 'type', 'retrying', 'task_id', ARGV[4], 'payload', ARGV[3])
return 1
"""

# KEYS: task hash, events stream, deadlines. ARGV: attempt, worker, now, task id, failed payload.
# Marks a job running unless it is terminal, or expires it (queued past its deadline: never run).
CLAIM = (
    _EXPIRE_LUA
    + f"""
local terminal = {_TERMINAL_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if status and terminal[status] then return status end
if expire_if_due(status) == 1 then return 'failed' end
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', ARGV[1], 'worker', ARGV[2], 'updated_at', ARGV[3])
return 'running'
"""
)


class TaskStore:
    """Task state transitions; owns no connection (the Redis client is injected)."""

    def __init__(self, redis: Redis, keys: Keys, *, task_ttl_s: int = 7 * 24 * 3600, wait: Wait | None = None) -> None:
        self.redis, self.keys, self.task_ttl_s = redis, keys, task_ttl_s
        self._acceptor = Acceptor(redis, keys, task_ttl_s, wait or Wait())
        self._finish = redis.register_script(FINISH)
        self._cancel = redis.register_script(CANCEL)
        self._claim = redis.register_script(CLAIM)
        self._retrying = redis.register_script(RETRYING)
        self._expire = redis.register_script(EXPIRE)
        self._reject = redis.register_script(REJECT)

    async def get(self, task_id: str) -> TaskState | None:
        raw = await text_hash(self.redis, self.keys.task(task_id))
        return state_from_hash(raw | {"task_id": task_id}) if raw else None

    async def accept(self, job: Job, idempotency_key: str | None, idem_ttl_s: int) -> AcceptResult:
        """Task hash, job entry and `accepted` event in one atomic step (or the first task's id)."""
        [result] = await self.accept_many([(job, idempotency_key)], idem_ttl_s)
        return result

    async def accept_many(
        self, jobs: list[tuple[Job, str | None]], idem_ttl_s: int, *, answer_once: bool = False, confirm: bool = True
    ) -> list[AcceptResult]:
        """Many accepts in one script call (services.accept)."""
        return await self._acceptor.accept_many(jobs, idem_ttl_s, answer_once=answer_once, confirm=confirm)

    async def finish(self, event: Event, fields: dict[str, object]) -> bool:
        """Terminal state + its event, once per task; False when the task was already terminal."""
        event.ts = event.ts or now()
        status = _STATUS_OF[event_type(event)]
        values = state_to_hash({"status": status, "updated_at": event.ts, **fields})
        entry = event_entry(event)
        args = [entry["type"], event.task_id, entry["payload"], self.task_ttl_s, *_flatten(values)]
        return bool(await self._finish(keys=[self.keys.task(event.task_id), self.keys.events], args=args))

    async def reject(self, rejected: Rejected, *, record_state: bool, answer_ttl_s: int | None = None) -> bool:
        """A rejected request: its event; with `record_state` also the task hash of a valid task id
        not used yet. With `answer_ttl_s` the request is a stream entry answered once: False when
        a redelivery of it had been rejected already."""
        rejected.ts = rejected.ts or now()
        fields = {"error": rejected.error, "field": rejected.field or ""}
        values = state_to_hash({"status": "rejected", "updated_at": rejected.ts, **fields})
        keys = [
            self.keys.answered(rejected.request_id) if answer_ttl_s else "",
            self.keys.task(rejected.task_id) if record_state else "",
            self.keys.events,
        ]
        args: list[EncodableT] = [
            answer_ttl_s or 0,
            encode(rejected),
            rejected.task_id,
            self.task_ttl_s,
            *_flatten(values),
        ]
        return bool(await self._reject(keys=keys, args=args))

    async def cancel(self, task_id: str, flag_ttl_s: int = 24 * 3600) -> str:
        """`cancelled` (was queued), `cancelling` (running: stops at its next step), `missing`, or
        `already_<status>` for a task that is already terminal."""
        event = Cancelled(task_id=task_id, ts=now())
        keys = [self.keys.task(task_id), self.keys.events, self.keys.cancel(task_id)]
        return str(await self._cancel(keys=keys, args=[encode(event), event.ts, flag_ttl_s, task_id]))

    async def cancel_requested(self, task_id: str) -> bool:
        return bool(await self.redis.exists(self.keys.cancel(task_id)))

    async def retrying(self, event: Retrying) -> bool:
        """`retrying` state and event, unless the task is already terminal."""
        event.ts = event.ts or now()
        args: list[EncodableT] = [event.error, event.ts, encode(event), event.task_id]
        return bool(await self._retrying(keys=[self.keys.task(event.task_id), self.keys.events], args=args))

    async def replay_dead(self, dlq_id: str) -> str | None:
        """Replay a dead-lettered entry; a job's task is reopened (queued, error cleared) in the
        same transaction, so the replayed job runs instead of being skipped as terminal."""
        jobs_prefix = self.keys.jobs("")

        def reopen(pipe: Pipeline, letter: DeadLetter) -> None:
            if letter.stream.startswith(jobs_prefix) and letter.task_id:
                # No deadline any more: an operator's replay runs however late it is.
                fields: dict[FieldT, EncodableT] = {
                    "status": "queued",
                    "error": "",
                    "progress": "0",
                    "updated_at": str(now()),
                    "deadline_at": "0",
                }
                pipe.hset(self.keys.task(letter.task_id), mapping=fields)

        return await replay(self.redis, self.keys, dlq_id, also=reopen)

    async def claim(self, task_id: str, attempt: int, worker: str) -> str:
        """`running`, or the terminal status that means the job must only be acked (`failed`
        also when this claim found the task queued past its deadline and expired it)."""
        at = now()
        args: list[EncodableT] = [attempt, worker, at, task_id, encode(_expired(task_id, at))]
        return str(await self._claim(keys=self._expiry_keys(task_id), args=args))

    async def expire_due(self, limit: int = 100) -> list[str]:
        """Expire queued tasks whose deadline has passed; the ids of those expired by this call.
        Tasks no longer queued leave the deadlines set."""
        at = now()
        due = [str(d) for d in await self.redis.zrangebyscore(self.keys.deadlines, "-inf", at, start=0, num=limit)]
        expired = []
        for task_id in due:
            args: list[EncodableT] = ["", "", at, task_id, encode(_expired(task_id, at))]
            if await self._expire(keys=self._expiry_keys(task_id), args=args):
                expired.append(task_id)
        return expired

    async def trim_index(self) -> int:
        """Forget index entries of tasks older than the tasks' retention (their hashes are gone)."""
        return int(await self.redis.zremrangebyscore(self.keys.tasks_by_created, "-inf", now() - self.task_ttl_s))

    def _expiry_keys(self, task_id: str) -> list[str]:
        return [self.keys.task(task_id), self.keys.events, self.keys.deadlines]


def _expired(task_id: str, at: float) -> Failed:
    return Failed(task_id=task_id, error=EXPIRED_ERROR, attempts=0, error_type="expired", ts=at)


_STATUS_OF = {"completed": "completed", "failed": "failed", "cancelled": "cancelled", "rejected": "rejected"}


def _flatten(values: dict[str, str]) -> list[str]:
    return [item for pair in values.items() for item in pair]
