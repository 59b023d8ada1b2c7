"""Reading a task's priority streams (high, normal, low) as one queue, higher priorities first
without starving the others.

The rule: claims follow a fixed cycle of turns, 4 high, 2 normal, 1 low in every 7 (a smooth
weighted round robin: high, normal, high, low, high, normal, high). On its turn a priority is
tried first, then the others from the highest down; a turn whose queue is empty goes to the next
one that has work. So with every queue full, 4/7 of the claims take high jobs, 2/7 normal, 1/7
low; a low job waits for at most 6 other claims of the same generator once it is at the head of
its queue; with only one priority waiting it gets every claim.

One StreamConsumer per stream does everything but the read (handling, acks, leases, reclaim,
trim, hand-back), all of them sharing one set of slots; this reader claims for them. A read tries
the streams in turn order in one script call (each a non-blocking XREADGROUP), so a claim takes
the first entry of the first stream with work; when none has work it blocks on XREAD over all
streams from their newest ids, read in the same call, so nothing added meanwhile is missed.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services.consumer import wire
from services.consumer.consumer import Handler, Hooks, StreamConsumer, ensure_group
from services.consumer.policy import ConsumerSettings, backoff_delay
from services.consumer.slots import Slots
from services.keys import Keys

log = structlog.get_logger("wan22.consumer")

SHARES = (4, 2, 1)  # claims per cycle for high, normal, low

# KEYS: the streams in the order to try. ARGV: group, consumer, count.
# Returns {index (1-based), id, fields, id, fields, ...} from the first stream with new entries,
# or {0, newest id of each stream...} when none has any.
CLAIM_FIRST = """
for i, stream in ipairs(KEYS) do
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', stream, '>')
  if reply and reply[1] and #reply[1][2] > 0 then
    local out = {i}
    for _, row in ipairs(reply[1][2]) do
      out[#out + 1] = row[1]
      out[#out + 1] = row[2]
    end
    return out
  end
end
local out = {0}
for _, stream in ipairs(KEYS) do
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  out[#out + 1] = newest[1] and newest[1][1] or '0-0'
end
return out
"""


def turns(shares: Sequence[int]) -> list[int]:
    """One cycle of a smooth weighted round robin: the index of the priority whose turn it is."""
    current, total, cycle = [0] * len(shares), sum(shares), []
    for _ in range(total):
        current = [c + s for c, s in zip(current, shares, strict=True)]
        chosen = max(range(len(shares)), key=lambda i: (current[i], -i))
        current[chosen] -= total
        cycle.append(chosen)
    return cycle


class PriorityConsumer:
    """`StreamConsumer`'s interface (run, stop) over streams given highest priority first."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        streams: Sequence[str],
        group: str,
        name: str,
        handler: Handler,
        settings: ConsumerSettings | None = None,
        hooks: Hooks | None = None,
        shares: Sequence[int] = SHARES,
    ) -> None:
        if len(shares) != len(streams):
            raise ValueError("one share per stream")
        self.redis, self.streams, self.group, self.name = redis, list(streams), group, name
        self.settings = settings or ConsumerSettings()
        self.slots = Slots(self.settings.concurrency)
        self.consumers = [
            StreamConsumer(redis, keys, s, group, name, handler, self.settings, hooks, slots=self.slots, reads=False)
            for s in self.streams
        ]
        self._cycle, self._turn = turns(shares), 0
        self._claim = redis.register_script(CLAIM_FIRST)
        self._stop = anyio.Event()
        self.claimed = [0] * len(self.streams)  # per stream, for tests and logs

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        for consumer in self.consumers:
            consumer.stop()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for consumer in self.consumers:
                await tg.start(consumer.run)  # each creates its group first
            task_status.started()
            with anyio.CancelScope() as reads:
                tg.start_soon(self._cancel_on_stop, reads)
                await self._read_loop()

    async def _cancel_on_stop(self, scope: anyio.CancelScope) -> None:
        await self._stop.wait()
        scope.cancel()

    def order(self) -> list[int]:
        """The streams to try for the next claim: the turn's priority, then the rest, highest first."""
        first = self._cycle[self._turn % len(self._cycle)]
        return [first, *(i for i in range(len(self.streams)) if i != first)]

    async def _read_loop(self) -> None:
        failures = 0
        while not self.stopping:
            await self.slots.wait()
            try:
                newest = await self._claim_once()
                failures = 0
                if newest:
                    await wire.xread(self.redis, newest, count=1, block_ms=self.settings.block_ms)
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # a stream or group deleted under us: recreate
                    for stream in self.streams:
                        await ensure_group(self.redis, stream, self.group)
                    continue
                failures = await self._trouble(exc, failures)
            except RedisError as exc:
                failures = await self._trouble(exc, failures)

    async def _claim_once(self) -> dict[str, str] | None:
        """Claims and feeds entries of the first stream with work; else the newest id of each stream."""
        order = self.order()
        keys = [self.streams[i] for i in order]
        count = max(1, min(self.settings.batch, self.slots.free))
        reply = await wire.run_script(self.redis, self._claim, keys, [self.group, self.name, count])
        found = int(reply[0])
        if not found:
            return dict(zip(keys, map(wire.text, reply[1:]), strict=True))
        index = order[found - 1]
        stream = self.streams[index]
        rows = reply[1:]
        entries = [wire.to_entry(stream, rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
        self._turn += 1
        self.claimed[index] += len(entries)
        self.consumers[index].feed(entries)
        return None

    async def _trouble(self, exc: Exception, failures: int) -> int:
        failures += 1
        delay = backoff_delay(failures, 0.1, 5.0)
        log.warning("consumer.redis_error", where="read", error=str(exc), retry_in=round(delay, 2))
        await anyio.sleep(delay)
        return failures
