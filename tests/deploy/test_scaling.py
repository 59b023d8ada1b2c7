"""The scaling contract of a generator's ScaledObject, simulated against a live Redis.

KEDA's `redis-streams` scaler (pkg/scalers/redis_streams_scaler.go), as deployed here:
- lag mode (`lagCount`): XINFO GROUPS → the group's `lag`; XLEN when the stream exists without
  the group; 0 when the stream does not exist. go-redis reads a NULL lag as 0.
- pending mode (`pendingEntriesCount`): XPENDING's count; an error (NOGROUP) when there is no group.
- a trigger is active when its value > its activation threshold (`activationLagCount`, default 0);
  a trigger in error is neither active nor counted.
KEDA scales to 0 when no trigger is active (after cooldownPeriod), otherwise the HPA sets
max over triggers of ceil(value / target), at least 1, at most maxReplicaCount.

The generator pool is played by the project's PriorityConsumer over the task's three priority
streams (one job at a time, as a generator): jobs are added before the groups exist, claimed,
failed, retried, dead-lettered, replayed, handed back by a drained consumer, reclaimed and trimmed,
on every priority, while a controller applies the replica count the six triggers imply. At every
observation: no stream's lag is NULL, each equals its undelivered entries, and the replica count is
never 0 while a job waits or runs on any priority.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import anyio
from redis.exceptions import ResponseError

from services.consumer import ConsumerSettings, Entry, list_dead, replay, trim_stream
from services.consumer.deadletter import REPLAY_FIELD
from services.consumer.priority import PriorityConsumer
from services.keys import GENERATOR_GROUP, Keys
from tests.deploy.manifests import Rendered

TICK_S, COOLDOWN_S = 0.03, 0.3  # pollingInterval and cooldownPeriod, scaled down
POOL = ConsumerSettings(
    lease_ms=600, block_ms=50, batch=1, concurrency=1, max_attempts=2, backoff_base_s=0.02, backoff_max_s=0.05,
    grace_s=0.5, trim_interval_s=0.2, retain_s=0,
)  # fmt: skip


@dataclass(frozen=True)
class Trigger:
    mode: str  # "lag" or "pending"
    target: int
    activation: int
    stream: str = ""


def triggers_of(scaled: dict) -> list[Trigger]:
    triggers = []
    for trigger in scaled["spec"]["triggers"]:
        meta = trigger["metadata"]
        if "lagCount" in meta:
            lag = Trigger("lag", int(meta["lagCount"]), int(meta.get("activationLagCount", 0)), meta["stream"])
            triggers.append(lag)
        else:
            triggers.append(Trigger("pending", int(meta["pendingEntriesCount"]), 0, meta["stream"]))
    return triggers


@dataclass
class Snapshot:
    lag: int | None  # what XINFO GROUPS says (None = NULL), or KEDA's fallbacks
    pending: int | None  # None = the scaler errors (no group)
    undelivered: int  # ground truth from the entries themselves
    in_flight: int


async def snapshot(redis, stream: str, group: str) -> Snapshot:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xinfo_groups(stream).xlen(stream).xrange(stream).xpending(stream, group)
        groups, length, entries, pending = await pipe.execute(raise_on_error=False)
    if isinstance(groups, ResponseError):  # no such key: KEDA reads 0
        return Snapshot(0, None, 0, 0)
    ours = [g for g in groups if g["name"] == group]
    if not ours:
        return Snapshot(length, None, len(entries), 0)
    last = _id(ours[0]["last-delivered-id"])
    undelivered = sum(1 for entry_id, _ in entries if _id(entry_id) > last)
    return Snapshot(ours[0]["lag"], int(pending["pending"]), undelivered, int(pending["pending"]))


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def keda_replicas(snaps: Snapshot | dict[str, Snapshot], triggers: list[Trigger], max_replicas: int) -> int:
    """Snapshots by stream (or one for every trigger)."""

    def value(trigger: Trigger) -> int | None:
        snap = snaps if isinstance(snaps, Snapshot) else snaps[trigger.stream]
        return snap.lag or 0 if trigger.mode == "lag" else snap.pending  # a NULL lag reads as 0

    counted = [(t, value(t)) for t in triggers if value(t) is not None]
    if not any(value > t.activation for t, value in counted):
        return 0
    return min(max_replicas, max(1, *(math.ceil(value / t.target) for t, value in counted)))


@dataclass
class Pool:
    """The generator Deployment: each replica a PriorityConsumer that runs one job at a time."""

    redis: object
    keys: Keys
    streams: list[str]  # highest priority first
    tg: anyio.abc.TaskGroup
    consumers: list[PriorityConsumer] = field(default_factory=list)
    started: int = 0

    async def handle(self, entry: Entry) -> None:
        await anyio.sleep(0.05)
        kind = entry.fields.get("kind", "ok")
        if REPLAY_FIELD not in entry.fields and kind == "always":
            raise RuntimeError("model error")
        if kind == "once" and entry.attempt == 1:
            raise RuntimeError("transient fault")
        if kind == "slow" and entry.deliveries == 1:
            await anyio.sleep(5)  # longer than the grace: a drain hands it back
        await self.redis.sadd("done", entry.fields["n"])

    def scale_to(self, replicas: int) -> None:
        while len(self.consumers) < replicas:
            self.started += 1
            name = f"generator-{self.started}"
            consumer = PriorityConsumer(self.redis, self.keys, self.streams, GENERATOR_GROUP, name, self.handle, POOL)
            self.consumers.append(consumer)
            self.tg.start_soon(consumer.run)
        while len(self.consumers) > replicas:
            self.consumers.pop().stop()  # SIGTERM: the pod leaves the replica count and drains


@dataclass
class Autoscaler:
    pool: Pool
    triggers: list[Trigger]
    max_replicas: int
    history: list[int] = field(default_factory=list)
    lag_only_zero_with_work: int = 0

    async def run(self) -> None:
        quiet_since = None
        while True:
            snaps = {s: await snapshot(self.pool.redis, s, GENERATOR_GROUP) for s in self.pool.streams}
            replicas = keda_replicas(snaps, self.triggers, self.max_replicas)
            self.check(snaps, replicas)
            self.history.append(replicas)
            if replicas == 0 and self.pool.consumers:  # KEDA waits cooldownPeriod before 1 → 0
                quiet_since = quiet_since or time.monotonic()
                replicas = 0 if time.monotonic() - quiet_since >= COOLDOWN_S else len(self.pool.consumers)
            else:
                quiet_since = None
            self.pool.scale_to(replicas)
            await anyio.sleep(TICK_S)

    def check(self, snaps: dict[str, Snapshot], replicas: int) -> None:
        for stream, snap in snaps.items():
            assert snap.lag is not None, f"{stream}: lag is NULL: KEDA would read 0"
            assert snap.lag == snap.undelivered, f"{stream}: lag differs from the undelivered entries"
        assert 0 <= replicas <= self.max_replicas
        if any(snap.undelivered or snap.in_flight for snap in snaps.values()):
            assert replicas >= 1, f"scaled to zero with work: {snaps}"
        lag_only = [t for t in self.triggers if t.mode == "lag"]
        in_flight = any(snap.in_flight for snap in snaps.values())
        if in_flight and keda_replicas(snaps, lag_only, self.max_replicas) == 0:
            self.lag_only_zero_with_work += 1


async def wait_until(check, timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def add_jobs(redis, stream: str, kinds: list[str]) -> None:
    """All at once, as one burst of requests routed by ingest."""
    base = await redis.incrby("added", len(kinds)) - len(kinds)
    async with redis.pipeline(transaction=True) as pipe:
        for offset, kind in enumerate(kinds):
            pipe.xadd(stream, {"n": str(base + offset), "kind": kind})
        await pipe.execute()


async def test_replicas_follow_the_queue_from_zero_to_n_and_back(prod: Rendered, redis):
    scaled = max(prod.of_kind("ScaledObject"), key=lambda s: s["spec"]["maxReplicaCount"])
    triggers, max_replicas = triggers_of(scaled), scaled["spec"]["maxReplicaCount"]
    assert {t.mode for t in triggers} == {"lag", "pending"} and max_replicas >= 2
    normal = scaled["spec"]["triggers"][2]["metadata"]["stream"]
    keys, task = Keys(prefix=normal.split(":")[0]), normal.split(":", 2)[-1]
    streams = keys.job_streams(task)
    assert [t.stream for t in triggers] == [s for s in streams for _ in ("lag", "pending")], "every priority"
    high, low = keys.jobs(task, "high"), keys.jobs(task, "low")

    def finished(count: int):
        async def check() -> bool:
            return await redis.scard("done") == count and autoscaler.history[-1] == 0 and not pool.consumers

        return check

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            pool = Pool(redis, keys, streams, tg)
            autoscaler = Autoscaler(pool, triggers, max_replicas)
            tg.start_soon(autoscaler.run)
            await anyio.sleep(5 * TICK_S)  # no stream yet: 0

            # Jobs before any generator ever ran: no group, KEDA reads XLEN and scales from zero.
            await add_jobs(redis, normal, ["ok"] * 4 + ["always"] * 2 + ["once"])
            await add_jobs(redis, high, ["ok"])
            await wait_until(lambda: _dead_count(redis, keys, 2))
            for dlq_id, _ in await list_dead(redis, keys):
                assert await replay(redis, keys, dlq_id)  # back on the stream, a new entry: lag + 1
            await wait_until(finished(8))
            climbed = max(autoscaler.history)

            # A low job alone scales from zero; a drain (scale-in, node drain) in the middle of it
            # hands it back, pending with lag 0. The pending trigger of the low stream keeps a
            # generator for it, which reclaims and finishes it.
            await add_jobs(redis, low, ["slow"])
            await wait_until(lambda: _claimed(redis, low))
            pool.consumers.pop().stop()
            await wait_until(finished(9))

            # Later work finds the groups: lag mode proper, on every priority.
            await add_jobs(redis, high, ["ok"])
            await add_jobs(redis, low, ["ok"])
            await add_jobs(redis, normal, ["ok"])
            await wait_until(finished(12))
            tg.cancel_scope.cancel()

    assert autoscaler.history[0] == 0 and autoscaler.history[-1] == 0
    assert climbed == min(7, max_replicas), "7 waiting jobs ask for 7 generators, up to maxReplicaCount"
    assert autoscaler.lag_only_zero_with_work > 0, "the lag alone would have scaled running jobs to zero"
    assert await redis.xlen(keys.dlq) == 0
    for stream in streams:
        assert await trim_stream(redis, stream, retain_s=0) >= 0
        (group,) = await redis.xinfo_groups(stream)
        assert group["lag"] == 0 and group["pending"] == 0
    assert await redis.xlen(normal) < 8 + 2, "acked entries were trimmed"


async def _dead_count(redis, keys: Keys, count: int) -> bool:
    return await redis.xlen(keys.dlq) == count


async def _claimed(redis, stream: str) -> bool:
    try:
        return int((await redis.xpending(stream, GENERATOR_GROUP))["pending"]) == 1
    except ResponseError:
        return False


async def test_what_keda_reads_when_the_lag_is_lost(redis):
    """Why the services never XDEL from a job stream: the lag turns NULL, KEDA reads 0 and scales
    a queue with work to zero; safe trimming keeps it exact."""
    stream, triggers = "wan22:jobs:probe", [Trigger("lag", 1, 0)]
    assert keda_replicas(await snapshot(redis, stream, GENERATOR_GROUP), triggers, 4) == 0  # no stream
    ids = [await redis.xadd(stream, {"n": str(i)}) for i in range(4)]
    assert keda_replicas(await snapshot(redis, stream, GENERATOR_GROUP), triggers, 4) == 4  # XLEN, no group
    await redis.xgroup_create(stream, GENERATOR_GROUP, id="0")
    await redis.xreadgroup(GENERATOR_GROUP, "c", {stream: ">"}, count=1)
    await redis.xack(stream, GENERATOR_GROUP, ids[0])
    await trim_stream(redis, stream, retain_s=0)
    snap = await snapshot(redis, stream, GENERATOR_GROUP)
    assert snap.lag == snap.undelivered == 3 and keda_replicas(snap, triggers, 4) == 3
    await redis.xdel(stream, ids[2])  # an undelivered entry deleted by hand
    snap = await snapshot(redis, stream, GENERATOR_GROUP)
    assert snap.lag is None and snap.undelivered == 2
    assert keda_replicas(snap, triggers, 4) == 0, "NULL lag reads as 0: work waits with no generator"
