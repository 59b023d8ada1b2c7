"""Queue position and an estimate of when a queued task starts and finishes.

Computed when asked, in one script call, from what Redis keeps anyway:
- the jobs ahead: every undelivered entry of a higher-priority stream (the generator group's lag,
  O(1) from XINFO GROUPS) plus the undelivered entries of its own stream older than its own entry
  (entry ids are ordered: an XRANGE from the group's last-delivered id to the task's entry id,
  counted inside Redis and capped). An entry at or below the last-delivered id was claimed.
- the generators: consumers of the task's streams that hold a job or read within the lease.
- the run time: the mean of the task's last `RUN_SAMPLES` completed jobs (a capped list the
  generator appends to).
The estimate counts a running job as a whole run and assumes strict priority order (the share the
lower priorities get makes it pessimistic for high jobs and optimistic for low ones), new
arrivals aside; it is a guide for a progress display, not a promise.
"""

from __future__ import annotations

import math

from redis.asyncio import Redis
from redis.typing import EncodableT

from services.contracts import QueueInfo, TaskState
from services.keys import GENERATOR_GROUP, PRIORITIES, Keys

RUN_SAMPLES = 20
MAX_COUNTED = 100_000  # entries ahead in its own stream counted at most

# KEYS: the task's job streams, highest priority first. ARGV: group, index of the task's stream
# (1-based), its entry id, max counted, lease ms.
# Returns {-1, 0, 0} when the entry was already claimed, else {ahead, live generators, busy ones}.
POSITION = """
local function id_less_or_equal(a, b)
  local ams, aseq = string.match(a, '(%d+)-(%d+)')
  local bms, bseq = string.match(b, '(%d+)-(%d+)')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq <= bseq)
end
local function group_of(stream)
  local groups = redis.pcall('XINFO', 'GROUPS', stream)
  if groups.err then return nil end
  for _, g in ipairs(groups) do
    local info = {}
    for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
    if info['name'] == ARGV[1] then return info end
  end
  return {['last-delivered-id'] = '0-0', ['lag'] = redis.call('XLEN', stream)}
end
local mine, ahead = tonumber(ARGV[2]), 0
local live, busy = {}, {}
for i, stream in ipairs(KEYS) do
  local group = group_of(stream)
  if group then
    local last = group['last-delivered-id']
    if i < mine then
      local lag = group['lag']
      if not lag then lag = #redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', ARGV[4]) end
      ahead = ahead + lag
    elseif i == mine then
      if id_less_or_equal(ARGV[3], last) then return {-1, 0, 0} end
      ahead = ahead + #redis.call('XRANGE', stream, '(' .. last, '(' .. ARGV[3], 'COUNT', ARGV[4])
    end
    if group['name'] then
      for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, ARGV[1])) do
        local info = {}
        for j = 1, #c, 2 do info[c[j]] = c[j + 1] end
        if info['pending'] > 0 then busy[info['name']] = true end
        if info['pending'] > 0 or info['idle'] < tonumber(ARGV[5]) then live[info['name']] = true end
      end
    end
  end
end
local n_live, n_busy = 0, 0
for _ in pairs(live) do n_live = n_live + 1 end
for _ in pairs(busy) do n_busy = n_busy + 1 end
return {ahead, n_live, n_busy}
"""


async def record_run(redis: Redis, keys: Keys, task: str, seconds: float) -> None:
    """A completed job's run time, for the estimates."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(keys.run_times(task), f"{seconds:.3f}")
        pipe.ltrim(keys.run_times(task), 0, RUN_SAMPLES - 1)
        await pipe.execute()


class QueueEstimator:
    def __init__(self, redis: Redis, keys: Keys, lease_ms: int) -> None:
        self.redis, self.keys, self.lease_ms = redis, keys, lease_ms
        self._position = redis.register_script(POSITION)

    async def __call__(self, state: TaskState) -> QueueInfo | None:
        """Where a queued task stands; None when it is not queued, or was claimed meanwhile."""
        if state.status != "queued" or not state.queue_entry or not state.task:
            return None
        priority = state.priority if state.priority in PRIORITIES else "normal"
        streams = self.keys.job_streams(state.task)
        args: list[EncodableT] = [
            GENERATOR_GROUP,
            PRIORITIES.index(priority) + 1,
            state.queue_entry,
            MAX_COUNTED,
            self.lease_ms,
        ]
        ahead, live, busy = (int(v) for v in await self._position(keys=streams, args=args))
        if ahead < 0:
            return None
        samples = [float(v) for v in await self.redis.lrange(self.keys.run_times(state.task), 0, RUN_SAMPLES - 1)]
        info = QueueInfo(position=ahead + 1, ahead=ahead, generators=live)
        if samples:
            run_s = sum(samples) / len(samples)
            workers = max(1, live)  # none live: the autoscaler starts one
            start_in = math.ceil(max(0, ahead + busy - workers + 1) / workers) * run_s
            info.run_s, info.start_in_s, info.eta_s = round(run_s, 3), round(start_in, 3), round(start_in + run_s, 3)
        return info
