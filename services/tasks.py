"""The task state machine in Redis: every transition that must be atomic is one Lua script, so a
task reaches exactly one terminal state and exactly one terminal event, whoever races.

MULTI cannot branch on what it reads (an idempotency key, the current status), so the
conditional transitions are scripts; each is still one atomic step on the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from services.consumer.deadletter import replay
from services.contracts import (
    TERMINAL,
    Accepted,
    Cancelled,
    DeadLetter,
    Event,
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

_json = msgspec.json.Encoder()

_TERMINAL_LUA = "{" + ", ".join(f"['{s}']=true" for s in sorted(TERMINAL)) + "}"

# KEYS: task hash, jobs stream, events stream, idempotency key ('' = none)
# ARGV: task id, job payload, accepted payload, task ttl, idem ttl, hash fields as one JSON object
# (one argument instead of thirty: encoding arguments is most of a request's client-side cost)
ACCEPT = """
local idem = KEYS[4]
local existing = nil
if idem ~= '' then existing = redis.call('GET', idem) end
if not existing and redis.call('EXISTS', KEYS[1]) == 1 then existing = ARGV[1] end
if existing then return {0, existing} end
local flat = {}
for name, value in pairs(cjson.decode(ARGV[6])) do
  flat[#flat + 1] = name
  flat[#flat + 1] = value
end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('XADD', KEYS[2], '*', 'type', 'job', 'task_id', ARGV[1], 'payload', ARGV[2])
redis.call('XADD', KEYS[3], '*', 'type', 'accepted', 'task_id', ARGV[1], 'payload', ARGV[3])
if idem ~= '' then redis.call('SET', idem, ARGV[1], 'EX', ARGV[5]) end
return {1, ARGV[1]}
"""

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

# KEYS: task hash. ARGV: attempt, worker, now. Marks a job running unless it is terminal.
CLAIM = f"""
local terminal = {_TERMINAL_LUA}
local status = redis.call('HGET', KEYS[1], 'status')
if status and terminal[status] then return status end
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', ARGV[1], 'worker', ARGV[2], 'updated_at', ARGV[3])
return 'running'
"""


@dataclass(frozen=True)
class AcceptResult:
    task_id: str
    created: bool  # False: an idempotent replay of an earlier request


class TaskStore:
    """Task state transitions; owns no connection (the Redis client is injected)."""

    def __init__(self, redis: Redis, keys: Keys, *, task_ttl_s: int = 7 * 24 * 3600) -> None:
        self.redis, self.keys, self.task_ttl_s = redis, keys, task_ttl_s
        self._accept = redis.register_script(ACCEPT)
        self._finish = redis.register_script(FINISH)
        self._cancel = redis.register_script(CANCEL)
        self._claim = redis.register_script(CLAIM)
        self._retrying = redis.register_script(RETRYING)

    async def get(self, task_id: str) -> TaskState | None:
        raw = await self.redis.hgetall(self.keys.task(task_id))
        return state_from_hash(raw | {"task_id": task_id}) if raw else None

    async def accept(self, job: Job, idempotency_key: str | None, idem_ttl_s: int) -> AcceptResult:
        """Task hash, job entry and `accepted` event in one atomic step (or the first task's id)."""
        [result] = await self.accept_many([(job, idempotency_key)], idem_ttl_s)
        return result

    async def accept_many(self, jobs: list[tuple[Job, str | None]], idem_ttl_s: int) -> list[AcceptResult]:
        """`accept` for many jobs in one round trip; each job is still its own atomic step."""
        calls = [self._accept_call(job, key, idem_ttl_s) for job, key in jobs]
        if len(calls) == 1:
            replies = [await self._accept(keys=calls[0][0], args=calls[0][1])]  # EVALSHA, loads on NOSCRIPT
        else:
            replies = await self._evalsha_many(self._accept, calls)
        results = [AcceptResult(task_id=str(task_id), created=bool(int(created))) for created, task_id in replies]
        replays = [(job, r) for (job, _), r in zip(jobs, results, strict=True) if not r.created]
        if replays:  # tell each producer which task its repeated request maps to
            async with self.redis.pipeline(transaction=False) as pipe:
                for job, result in replays:
                    event = Accepted(
                        task_id=result.task_id, request_id=job.request_id, task=job.task, idempotent_replay=True
                    )
                    pipe.xadd(self.keys.events, event_entry(event))
                await pipe.execute()
        return results

    async def _evalsha_many(self, script: AsyncScript, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Many calls of one script in one pipeline of plain EVALSHA (redis-py's pipelined scripts
        ask SCRIPT EXISTS first: a second round trip). After a Redis restart empties the script
        cache every call fails with NOSCRIPT and none ran, so loading it and resending is safe."""
        for attempt in (1, 2):
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        pipe.evalsha(script.sha, len(keys), *keys, *args)
                    return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
                await self.redis.script_load(script.script)
        raise AssertionError("unreachable")

    def _accept_call(self, job: Job, idempotency_key: str | None, idem_ttl_s: int) -> tuple[list[str], list[Any]]:
        at = now()
        state = TaskState(
            task_id=job.task_id,
            status="queued",
            task=job.task,
            request_id=job.request_id,
            webhook_url=job.webhook_url or "",
            metadata=job.metadata,
            created_at=at,
            updated_at=at,
        )
        accepted = Accepted(task_id=job.task_id, request_id=job.request_id, task=job.task, ts=at)
        keys = [
            self.keys.task(job.task_id),
            self.keys.jobs(job.task),
            self.keys.events,
            self.keys.idempotency(idempotency_key) if idempotency_key else "",
        ]
        fields = state_to_hash(state)
        del fields["task_id"]
        args = [job.task_id, encode(job), encode(accepted), self.task_ttl_s, idem_ttl_s, _json.encode(fields)]
        return keys, args

    async def finish(self, event: Event, fields: dict[str, object]) -> bool:
        """Terminal state + its event, once per task; False when the task was already terminal."""
        event.ts = event.ts or now()
        status = _STATUS_OF[event_type(event)]
        values = state_to_hash({"status": status, "updated_at": event.ts, **fields})
        entry = event_entry(event)
        args = [entry["type"], event.task_id, entry["payload"], self.task_ttl_s, *_flatten(values)]
        return bool(await self._finish(keys=[self.keys.task(event.task_id), self.keys.events], args=args))

    async def reject(self, rejected: Rejected, *, record_state: bool) -> bool:
        """A rejected request: its event always; the task hash only for a valid task id not yet
        used (a duplicate id must not overwrite the task that owns it)."""
        if record_state and not await self.redis.exists(self.keys.task(rejected.task_id)):
            return await self.finish(rejected, {"error": rejected.error, "field": rejected.field or ""})
        await self.redis.xadd(self.keys.events, event_entry(rejected))
        return True

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
        args = [event.error, event.ts, encode(event), event.task_id]
        return bool(await self._retrying(keys=[self.keys.task(event.task_id), self.keys.events], args=args))

    async def replay_dead(self, dlq_id: str) -> str | None:
        """Replay a dead-lettered entry; a job's task is reopened (queued, error cleared) in the
        same transaction, so the replayed job runs instead of being skipped as terminal."""
        jobs_prefix = self.keys.jobs("")

        def reopen(pipe: Pipeline, letter: DeadLetter) -> None:
            if letter.stream.startswith(jobs_prefix) and letter.task_id:
                fields = {"status": "queued", "error": "", "progress": "0", "updated_at": str(now())}
                pipe.hset(self.keys.task(letter.task_id), mapping=fields)

        return await replay(self.redis, self.keys, dlq_id, also=reopen)

    async def claim(self, task_id: str, attempt: int, worker: str) -> str:
        """`running`, or the terminal status that means the job must only be acked."""
        return str(await self._claim(keys=[self.keys.task(task_id)], args=[attempt, worker, now()]))


_STATUS_OF = {"completed": "completed", "failed": "failed", "cancelled": "cancelled", "rejected": "rejected"}


def _flatten(values: dict[str, str]) -> list[str]:
    return [item for pair in values.items() for item in pair]
