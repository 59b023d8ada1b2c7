"""Entries a producer wrote with any bytes, through the reliable consumer against a real
redis-server: read, reclaim and priority paths. A defective entry never blocks its batch, the read
loop or reclaim; it is dead-lettered with its exact bytes, which a replay writes back."""

from __future__ import annotations

import base64
import random

import anyio
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.consumer import ConsumerSettings, Entry, StreamConsumer, list_dead, replay, wire
from services.consumer.priority import PriorityConsumer
from services.contracts import Completed, TaskState, encode, state_to_hash
from services.follow import follow
from services.keys import Keys
from services.redisconn import connect
from tests.spine.test_consumer import FAST, GROUP, STEADY, STREAM, wait_until

RawEntry = list[tuple[bytes, bytes]]
HOSTILE: dict[str, RawEntry] = {
    "payload not UTF-8": [(b"type", b"job"), (b"payload", b"\x00\xff not json")],
    "name not UTF-8": [(b"\xff\xfe", b"v"), (b"payload", b"{}")],
    "repeated name": [(b"payload", b"{}"), (b"payload", b"{}")],
    "empty name and value": [(b"", b"")],
    "not JSON": [(b"payload", b"{not json")],
    "a million fields": [(b"f%d" % i, b"") for i in range(1_000_000)],
    "a 16 MiB value": [(b"payload", b"\xff" * (16 << 20))],
}
GOOD = [(b"payload", b'{"n": 1}')]


class Message(msgspec.Struct):
    n: int


async def xadd_raw(redis, stream: str, fields: RawEntry) -> str:
    return str(await redis.execute_command("XADD", stream, "*", *(part for pair in fields for part in pair)))


def handler(handled: list[Entry]):
    decoder = msgspec.json.Decoder(Message)

    async def handle(entry: Entry) -> None:
        entry.decode(decoder)  # Undecodable: dead-lettered at once
        handled.append(entry)

    return handle


async def run_until_dead_lettered(redis, keys, consumer, count: int, handled: list[Entry]) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await wait_until(lambda: _dead_and_handled(redis, keys, count, handled), timeout=60)
        consumer.stop()


async def _dead_and_handled(redis, keys, count: int, handled: list[Entry]) -> bool:
    return await redis.xlen(keys.dlq) == count and len(handled) == 1


async def test_hostile_entries_are_dead_lettered_with_their_bytes_and_the_good_one_handled(redis, keys):
    ids = {name: await xadd_raw(redis, STREAM, fields) for name, fields in HOSTILE.items()}
    good_id = await xadd_raw(redis, STREAM, GOOD)
    handled: list[Entry] = []
    # The read path: a lease a loaded machine's slow decode of a million fields cannot outlast.
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c1", handler(handled), STEADY)
    await run_until_dead_lettered(redis, keys, consumer, len(HOSTILE), handled)

    assert [entry.id for entry in handled] == [good_id]
    assert int((await redis.xpending(STREAM, GROUP))["pending"]) == 0
    letters = {letter.entry_id: letter for _, letter in await list_dead(redis, keys, count=100)}
    assert set(letters) == set(ids.values())
    assert {letter.reason for letter in letters.values()} == {"undecodable"}
    for name in ("payload not UTF-8", "name not UTF-8", "repeated name"):
        raw = [(base64.b64decode(f.name_b64), base64.b64decode(f.value_b64)) for f in letters[ids[name]].raw_fields]
        assert raw == HOSTILE[name], name
    assert letters[ids["not JSON"]].raw_fields is None  # text entries keep plain fields
    assert letters[ids["not JSON"]].fields == {"payload": "{not json"}
    million = letters[ids["a million fields"]]
    assert 0 < len(million.fields) < 1_000_000 and million.dropped_fields == 1_000_000 - len(million.fields)
    assert letters[ids["a 16 MiB value"]].dropped_fields == 1


async def test_replay_writes_back_the_exact_bytes(redis, keys):
    await xadd_raw(redis, STREAM, HOSTILE["payload not UTF-8"])
    await xadd_raw(redis, STREAM, GOOD)
    handled: list[Entry] = []
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c1", handler(handled), FAST)
    await run_until_dead_lettered(redis, keys, consumer, 1, handled)
    [(dlq_id, _)] = await list_dead(redis, keys)

    new_id = await replay(redis, keys, dlq_id)

    [entry] = await wire.xrange(redis, STREAM, new_id, new_id)
    assert entry.raw is not None and entry.raw[:2] == HOSTILE["payload not UTF-8"]
    assert [name for name, _ in entry.raw[2:]] == [b"_history", b"_replay_of"]


async def test_entries_of_a_dead_consumer_are_reclaimed_and_dead_lettered(redis, keys):
    """The reclaim path: XAUTOCLAIM's reply holds the bad bytes, and every lease it came back."""
    for fields in HOSTILE.values():
        await xadd_raw(redis, STREAM, fields)
    await xadd_raw(redis, STREAM, GOOD)
    await redis.xgroup_create(STREAM, GROUP, id="0")
    await wire.raw_command(redis, "XREADGROUP", "GROUP", GROUP, "gone", "COUNT", 100, "STREAMS", STREAM, ">")
    assert int((await redis.xpending(STREAM, GROUP))["pending"]) == len(HOSTILE) + 1
    handled: list[Entry] = []
    consumer = StreamConsumer(redis, keys, STREAM, GROUP, "c1", handler(handled), FAST)
    await run_until_dead_lettered(redis, keys, consumer, len(HOSTILE), handled)
    assert int((await redis.xpending(STREAM, GROUP))["pending"]) == 0


async def test_priority_reader_claims_past_a_hostile_entry(redis, keys):
    streams = [f"{STREAM}:high", STREAM, f"{STREAM}:low"]
    await xadd_raw(redis, streams[0], HOSTILE["payload not UTF-8"])
    await xadd_raw(redis, streams[0], HOSTILE["repeated name"])
    await xadd_raw(redis, streams[2], GOOD)
    handled: list[Entry] = []
    settings = ConsumerSettings(lease_ms=600, block_ms=50, backoff_base_s=0.02)
    consumer = PriorityConsumer(redis, keys, streams, GROUP, "g1", handler(handled), settings)
    await run_until_dead_lettered(redis, keys, consumer, 2, handled)
    assert handled[0].stream == streams[2]


async def test_a_follower_skips_entries_that_are_not_text(redis):
    keys = Keys()
    task_id = "t-follow"
    await redis.hset(keys.task(task_id), mapping=state_to_hash(TaskState(task_id=task_id, status="running")))
    seen: list[str] = []

    async def watch() -> None:
        async for kind, _, _ in follow(redis, keys, task_id, block_ms=100):
            seen.append(kind)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await wait_until(lambda: _true(seen))
        await xadd_raw(redis, keys.events, [(b"type", b"completed"), (b"task_id", task_id.encode()), (b"\xff", b"")])
        await xadd_raw(redis, keys.progress, [(b"task_id", task_id.encode()), (b"payload", b"\xfe")])
        done = Completed(task_id=task_id, video_url="v")
        await redis.xadd(keys.events, {"type": "completed", "task_id": task_id, "payload": encode(done)})
    assert seen[0] == "state" and seen[-1] == "completed" and len([k for k in seen if k != "keepalive"]) == 2


async def _true(seen: list[str]) -> bool:
    return bool(seen)


JOB_STREAMS = [f"{STREAM}:high", STREAM, f"{STREAM}:low"]
raw_job_entries = st.lists(
    st.tuples(
        st.sampled_from([b"type", b"task_id", b"payload"]) | st.binary(max_size=10),
        st.sampled_from([b"job", b"t-1", b"{}", b"\x00\xff"]) | st.binary(max_size=40),
    ),
    min_size=1,
    max_size=5,
)
job_bursts = st.lists(st.tuples(st.sampled_from(JOB_STREAMS), raw_job_entries | st.just(GOOD)), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(burst=job_bursts)
async def test_fuzzed_job_entries_on_every_priority_are_handled_or_dead_lettered_once(redis_server, burst):
    redis = connect(redis_server.url)
    keys = Keys(prefix=f"fuzz{random.getrandbits(32)}")
    try:
        ids = [await xadd_raw(redis, stream, fields) for stream, fields in burst]
        handled: list[Entry] = []
        # A long lease: a redelivery under load (at least once) would make the count inexact.
        settings_ = ConsumerSettings(lease_ms=10_000, block_ms=50, backoff_base_s=0.02)
        consumer = PriorityConsumer(redis, keys, JOB_STREAMS, GROUP, "g1", handler(handled), settings_)
        good = sum(1 for _, fields in burst if fields == GOOD)
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)
            await wait_until(lambda: _dead_and_handled_count(redis, keys, len(burst) - good, handled, good), 30)
            consumer.stop()
        dead = [letter.entry_id for _, letter in await list_dead(redis, keys, count=1000)]
        assert sorted(dead + [entry.id for entry in handled]) == sorted(ids)
        for stream in JOB_STREAMS:
            assert int((await redis.xpending(stream, GROUP))["pending"]) == 0
    finally:
        await redis.delete(*JOB_STREAMS, keys.dlq)
        await redis.aclose()


async def _dead_and_handled_count(redis, keys, dead: int, handled: list[Entry], good: int) -> bool:
    return await redis.xlen(keys.dlq) == dead and len(handled) == good


async def test_an_entry_dead_lettered_by_two_deliveries_has_one_letter(redis, keys):
    """Its lease ran out while the first delivery was failing: the reclaiming delivery fails the
    same way. The second dead-lettering only acks."""
    from services.consumer import dead_letter

    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    entry_id = await xadd_raw(redis, STREAM, HOSTILE["not JSON"])
    [first] = await wire.xreadgroup(redis, GROUP, "c1", {STREAM: ">"}, count=1, block_ms=None)
    _, [again] = await wire.xautoclaim(redis, STREAM, GROUP, "c2", 0, "0", count=1)
    assert first.id == again.id == entry_id
    assert await dead_letter(redis, keys, GROUP, first, [], "undecodable") is not None
    assert await dead_letter(redis, keys, GROUP, again, [], "undecodable") is None
    assert [letter.entry_id for _, letter in await list_dead(redis, keys)] == [entry_id]
    assert int((await redis.xpending(STREAM, GROUP))["pending"]) == 0
