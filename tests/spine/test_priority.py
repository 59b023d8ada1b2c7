"""The priority reader over a task's job streams, against a real redis-server."""

from __future__ import annotations

import time

import anyio

from services.consumer import ConsumerSettings, Entry
from services.consumer.priority import PriorityConsumer, turns
from services.keys import GENERATOR_GROUP, PRIORITIES, Keys
from tests.spine.test_consumer import wait_until

KEYS = Keys()
STREAMS = KEYS.job_streams("demo")
ONE_AT_A_TIME = ConsumerSettings(
    lease_ms=600, block_ms=3_000, batch=1, concurrency=1, backoff_base_s=0.02, backoff_max_s=0.1, grace_s=1.0
)


class Recorder:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.deliveries: dict[str, int] = {}
        self.running = 0
        self.most_running = 0

    async def handle(self, entry: Entry) -> None:
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        await anyio.sleep(0.01)
        self.order.append(entry.fields["p"])
        self.deliveries[entry.id] = entry.deliveries
        self.running -= 1


async def _fill(redis, counts: dict[str, int]) -> None:
    for priority, count in counts.items():
        for n in range(count):
            await redis.xadd(KEYS.jobs("demo", priority), {"p": priority, "n": str(n)})


def test_job_streams_of_a_task():
    assert STREAMS == ["wan22:jobs:demo:high", "wan22:jobs:demo", "wan22:jobs:demo:low"]
    assert {KEYS.task_of(stream) for stream in STREAMS} == {"demo"}
    assert KEYS.task_of(KEYS.jobs("t2v-A14B", "low")) == "t2v-A14B"


def test_the_cycle_is_four_two_one():
    assert [PRIORITIES[i] for i in turns((4, 2, 1))] == ["high", "normal", "high", "low", "high", "normal", "high"]


async def test_higher_priorities_first_and_low_still_gets_its_share(redis):
    await _fill(redis, {"low": 6, "normal": 6, "high": 12})  # oldest first: the low ones
    recorder = Recorder()
    consumer = PriorityConsumer(redis, KEYS, STREAMS, GENERATOR_GROUP, "gen-1", recorder.handle, ONE_AT_A_TIME)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: _true(len(recorder.order) == 24))
        consumer.stop()
    first = recorder.order[:21]  # three cycles with every queue full
    assert [first.count(p) for p in PRIORITIES] == [12, 6, 3]
    assert recorder.order[:7] == ["high", "normal", "high", "low", "high", "normal", "high"]
    assert recorder.order[21:] == ["low"] * 3, "an empty queue's turn goes to the next with work"
    assert recorder.most_running == 1, "one gang, one job: the slots are shared by the streams"
    for stream in STREAMS:
        (group,) = await redis.xinfo_groups(stream)
        assert group["pending"] == 0 and group["lag"] == 0


async def test_a_new_low_job_wakes_an_idle_reader_at_once(redis):
    recorder = Recorder()
    consumer = PriorityConsumer(redis, KEYS, STREAMS, GENERATOR_GROUP, "gen-1", recorder.handle, ONE_AT_A_TIME)
    async with anyio.create_task_group() as tg:
        await tg.start(consumer.run)
        await anyio.sleep(0.3)  # blocked, waiting for work on all three streams
        added = time.monotonic()
        await _fill(redis, {"low": 1})
        await wait_until(lambda: _true(recorder.order == ["low"]))
        waited = time.monotonic() - added
        consumer.stop()
    assert waited < 2.0, f"took {waited:.1f} s: the reader did not wake on the new entry (block is 3 s)"


async def test_a_dead_generators_job_on_any_priority_is_reclaimed(redis):
    for stream in STREAMS:
        await redis.xgroup_create(stream, GENERATOR_GROUP, id="0", mkstream=True)
    await _fill(redis, {"low": 1})
    await redis.xreadgroup(GENERATOR_GROUP, "dead", {KEYS.jobs("demo", "low"): ">"}, count=1)
    recorder = Recorder()
    consumer = PriorityConsumer(redis, KEYS, STREAMS, GENERATOR_GROUP, "gen-2", recorder.handle, ONE_AT_A_TIME)
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: _true(recorder.order == ["low"]))
        consumer.stop()
    assert list(recorder.deliveries.values()) == [2]
    assert int((await redis.xpending(KEYS.jobs("demo", "low"), GENERATOR_GROUP))["pending"]) == 0


async def _true(value: bool) -> bool:
    return value


async def test_paused_slots_claim_nothing_new_or_reclaimed_until_resumed(redis):
    """A generator whose gang is not ready pauses its slots: jobs stay for generators that can run them."""
    for stream in STREAMS:
        await redis.xgroup_create(stream, GENERATOR_GROUP, id="0", mkstream=True)
    await _fill(redis, {"low": 1, "high": 1})
    await redis.xreadgroup(GENERATOR_GROUP, "dead", {KEYS.jobs("demo", "low"): ">"}, count=1)  # past its lease soon
    recorder = Recorder()
    consumer = PriorityConsumer(redis, KEYS, STREAMS, GENERATOR_GROUP, "gen-3", recorder.handle, ONE_AT_A_TIME)
    consumer.slots.pause()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        # Several leases (0.6 s) and reclaim sweeps (every 0.3 s): a claim or reclaim takes milliseconds.
        await anyio.sleep(2.0)
        assert recorder.order == []
        [high] = await redis.xinfo_groups(KEYS.jobs("demo", "high"))
        [low] = await redis.xinfo_groups(KEYS.jobs("demo", "low"))
        assert (high["lag"], high["pending"], low["pending"]) == (1, 0, 1)
        assert [c["name"] for c in await redis.xinfo_consumers(KEYS.jobs("demo", "low"), GENERATOR_GROUP)] == ["dead"]
        consumer.slots.resume()
        await wait_until(lambda: _true(sorted(recorder.order) == ["high", "low"]))
        consumer.stop()
    for stream in STREAMS:
        assert int((await redis.xpending(stream, GENERATOR_GROUP))["pending"]) == 0
