"""Accepting jobs: task hash, job entry and `accepted` event, in one script call per batch.

With `Wait.replicas` (WAN22_REDIS_WAIT_REPLICAS) and `confirm`, the script call and a `WAIT` share
one pipeline on one connection, and fewer acknowledgements than asked for fail the whole batch
(`NotReplicated`): the caller answers nobody, and the client retries with its idempotency key.
WAIT counts what the replicas acknowledged of the writes made on its own connection; a retry of the
pipeline after a reconnect (to a promoted replica, say) runs both again, so the acknowledgement
always covers the writes of the same run. A repeated request writes its replay event in a second
such call, after checking that the task it maps to is on the server it runs on: a task lost in a
failover is not reported as accepted, and the retry creates it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from services.contracts import Accepted, Job, TaskState, encode, now, state_to_hash
from services.keys import Keys
from services.redisconn import NotReplicated

_json = msgspec.json.Encoder()

# Accepts a batch of jobs in one call; each is checked and written in turn, so a repeated task id or
# idempotency key within the batch maps to the first. One call for many jobs: per-command client
# cost, not Redis, bounded the accept rate when each job was its own EVALSHA.
# KEYS, 7 per job: task hash, jobs stream (of its priority), events stream, idempotency key ('' =
# none), deadlines set ('' = no deadline), answered marker of its request entry ('' = none), the
# index of tasks by creation time (what `GET /v1/videos` pages through).
# ARGV: task ttl, idem ttl, then 4 per job: task id, job payload, accepted payload, hash fields as
# one JSON object (one argument instead of thirty: encoding arguments costs more than decoding).
# The job's entry id goes into the hash (`queue_entry`) for queue positions.
# Returns per job, flat: 1 (created), 0 (an earlier task's id) or 2 (this request entry was
# answered before: a redelivery, nothing written), and the task id.
ACCEPT = """
local out = {}
for j = 0, #KEYS / 7 - 1 do
  local k, a = j * 7, 2 + j * 4
  local task_id, idem, answered = ARGV[a + 1], KEYS[k + 4], KEYS[k + 6]
  local existing = nil
  if answered ~= '' then existing = redis.call('GET', answered) end
  if existing then
    out[#out + 1], out[#out + 2] = 2, existing
  else
  if idem ~= '' then existing = redis.call('GET', idem) end
  if not existing and redis.call('EXISTS', KEYS[k + 1]) == 1 then existing = task_id end
  if existing then
    out[#out + 1], out[#out + 2] = 0, existing
  else
    local entry_id = redis.call('XADD', KEYS[k + 2], '*', 'type', 'job', 'task_id', task_id, 'payload', ARGV[a + 2])
    local fields = cjson.decode(ARGV[a + 4])
    local flat = {}
    for name, value in pairs(fields) do
      flat[#flat + 1] = name
      flat[#flat + 1] = value
    end
    flat[#flat + 1], flat[#flat + 2] = 'queue_entry', entry_id
    redis.call('HSET', KEYS[k + 1], unpack(flat))
    redis.call('EXPIRE', KEYS[k + 1], ARGV[1])
    redis.call('XADD', KEYS[k + 3], '*', 'type', 'accepted', 'task_id', task_id, 'payload', ARGV[a + 3])
    if idem ~= '' then redis.call('SET', idem, task_id, 'EX', ARGV[2]) end
    if KEYS[k + 5] ~= '' then redis.call('ZADD', KEYS[k + 5], fields['deadline_at'], task_id) end
    if answered ~= '' then redis.call('SET', answered, task_id, 'EX', ARGV[2]) end
    redis.call('ZADD', KEYS[k + 7], fields['created_at'], task_id)
    out[#out + 1], out[#out + 2] = 1, task_id
  end
  end
end
return out
"""

# The `accepted` events of repeated requests, each with the task it maps to.
# KEYS, 4 per job: events stream, answered marker ('' = none), idempotency key ('' = none), task
# hash of the task it maps to. ARGV: marker ttl, then 2 per job: task id, accepted payload.
# Returns per job 1, or 0 when neither key is on this server (the task was lost in a failover,
# or expired just now): nothing is written for it then.
REPLAY = """
local out = {}
for j = 0, #KEYS / 4 - 1 do
  local k, a = j * 4, 1 + j * 2
  if redis.call('EXISTS', KEYS[k + 3], KEYS[k + 4]) > 0 then
    redis.call('XADD', KEYS[k + 1], '*', 'type', 'accepted', 'task_id', ARGV[a + 1], 'payload', ARGV[a + 2])
    if KEYS[k + 2] ~= '' then redis.call('SET', KEYS[k + 2], ARGV[a + 1], 'EX', ARGV[1]) end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""

# The hash of a queued task, as `state_to_hash` writes it, built once: only a few fields vary.
_NOT_QUEUED_FIELDS = ("task_id", "queue_entry")  # the script adds the entry id
_QUEUED_HASH = {
    k: v for k, v in state_to_hash(TaskState(task_id="", status="queued")).items() if k not in _NOT_QUEUED_FIELDS
}


def _queued_fields(job: Job, at: float) -> dict[str, str]:
    ts, metadata = str(at), _json.encode(job.metadata).decode()
    varying = {"task": job.task, "request_id": job.request_id, "webhook_url": job.webhook_url or ""}
    fields = _QUEUED_HASH | varying | {"metadata": metadata, "created_at": ts, "updated_at": ts}
    fields["priority"] = job.priority
    fields["prompt"] = job.prompt
    fields["requested_size"] = f"{job.width}*{job.height}"
    fields["requested_frames"] = str(job.frame_num)
    if job.deadline_at:
        fields["deadline_at"] = repr(job.deadline_at)
    return fields


@dataclass(frozen=True)
class AcceptResult:
    task_id: str
    created: bool  # False: an idempotent replay of an earlier request, or a redelivery
    redelivered: bool = False  # this request entry was answered before: nothing was written


@dataclass(frozen=True)
class Wait:
    """WAIT for this many replicas after each accept (0 = do not), up to `timeout_ms`."""

    replicas: int = 0
    timeout_ms: int = 1000


class Acceptor:
    def __init__(self, redis: Redis, keys: Keys, task_ttl_s: int, wait: Wait) -> None:
        self.redis, self.keys, self.task_ttl_s, self.wait = redis, keys, task_ttl_s, wait
        self._accept = redis.register_script(ACCEPT)
        self._replay = redis.register_script(REPLAY)

    async def accept_many(
        self, jobs: list[tuple[Job, str | None]], idem_ttl_s: int, *, answer_once: bool = False, confirm: bool = True
    ) -> list[AcceptResult]:
        """Each job is written whole or not at all. `answer_once`: each job's request_id is a
        stream entry that may be delivered again (its consumer died before acking): its answer is
        then not repeated, nor its task created twice. `confirm`: WAIT as configured."""
        keys: list[str] = []
        args: list[Any] = [self.task_ttl_s, idem_ttl_s]
        for job, idempotency_key in jobs:
            answered = self.keys.answered(job.request_id) if answer_once else ""
            self._add_accept(keys, args, job, idempotency_key, answered)
        reply = await self._call(self._accept, keys, args, confirm)
        results = [
            AcceptResult(task_id=str(reply[i + 1]), created=int(reply[i]) == 1, redelivered=int(reply[i]) == 2)
            for i in range(0, len(reply), 2)
        ]
        replays = [
            (job, key, r) for (job, key), r in zip(jobs, results, strict=True) if not r.created and not r.redelivered
        ]
        if replays:  # tell each producer which task its repeated request maps to
            await self._send_replays(replays, idem_ttl_s, answer_once, confirm)
        return results

    async def _send_replays(
        self, replays: list[tuple[Job, str | None, AcceptResult]], idem_ttl_s: int, answer_once: bool, confirm: bool
    ) -> None:
        keys: list[str] = []
        args: list[Any] = [idem_ttl_s]
        for job, idempotency_key, result in replays:
            event = Accepted(
                task_id=result.task_id, request_id=job.request_id, task=job.task, idempotent_replay=True, ts=now()
            )
            keys += [
                self.keys.events,
                self.keys.answered(job.request_id) if answer_once else "",
                self.keys.idempotency(idempotency_key) if idempotency_key else "",
                self.keys.task(result.task_id),
            ]
            args += [result.task_id, encode(event)]
        written = await self._call(self._replay, keys, args, confirm)
        if not all(int(ok) for ok in written):
            lost = [r.task_id for (_, _, r), ok in zip(replays, written, strict=True) if not int(ok)]
            raise NotReplicated(f"the tasks {lost} of repeated requests are not on this server (a failover?)")

    async def _call(self, script: AsyncScript, keys: list[str], args: list[Any], confirm: bool) -> Any:
        """The script, then WAIT on the same connection when asked to."""
        if not (confirm and self.wait.replicas):
            return await script(keys=keys, args=args)  # EVALSHA, loads the script on NOSCRIPT
        async with self.redis.pipeline(transaction=False) as pipe:
            await script(keys=keys, args=args, client=pipe)  # the pipeline loads missing scripts
            pipe.execute_command("WAIT", self.wait.replicas, self.wait.timeout_ms)
            reply, acknowledged = await pipe.execute()
        if int(acknowledged) < self.wait.replicas:
            raise NotReplicated(
                f"{acknowledged} of {self.wait.replicas} replicas acknowledged within {self.wait.timeout_ms} ms"
            )
        return reply

    def _add_accept(
        self, keys: list[str], args: list[Any], job: Job, idempotency_key: str | None, answered: str
    ) -> None:
        at = now()
        accepted = Accepted(task_id=job.task_id, request_id=job.request_id, task=job.task, ts=at)
        keys += [
            self.keys.task(job.task_id),
            self.keys.jobs(job.task, job.priority),
            self.keys.events,
            self.keys.idempotency(idempotency_key) if idempotency_key else "",
            self.keys.deadlines if job.deadline_at else "",
            answered,
            self.keys.tasks_by_created,
        ]
        args += [job.task_id, encode(job), encode(accepted), _json.encode(_queued_fields(job, at))]
