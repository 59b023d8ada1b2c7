"""The task state machine's scripts against a real Redis."""

from __future__ import annotations

import anyio
import pytest

from services.accept import REPLAY, Wait
from services.consumer import Entry, dead_letter
from services.contracts import Cancelled, Completed, Failed, Job, TaskState, event_decoder, now, state_to_hash
from services.keys import GENERATOR_GROUP, Keys
from services.redisconn import NotReplicated
from services.tasks import TaskStore

KEYS = Keys()


def job(task_id: str) -> Job:
    return Job(
        task_id=task_id,
        task="demo",
        prompt="p",
        width=64,
        height=64,
        frame_num=5,
        sample_steps=4,
        sample_shift=5.0,
        guide_scale=(5.0, 5.0),
        seed=1,
        fps=24,
        created_at=now(),
    )


async def test_batch_accept_survives_an_emptied_script_cache(redis):
    store = TaskStore(redis, KEYS)
    await store.accept(job("a"), None, 60)
    await redis.script_flush()  # as after a Redis restart
    results = await store.accept_many([(job("b"), None), (job("c"), "key-1"), (job("a"), None)], 60)
    assert [(r.task_id, r.created) for r in results] == [("b", True), ("c", True), ("a", False)]
    assert await redis.xlen(KEYS.jobs("demo")) == 3


async def test_an_accept_no_replica_acknowledges_is_written_but_fails_and_so_does_its_repeat(redis):
    store = TaskStore(redis, KEYS, wait=Wait(replicas=1, timeout_ms=20))  # this Redis has no replica
    with pytest.raises(NotReplicated, match="0 of 1 replicas acknowledged within 20 ms"):
        await store.accept(job("w"), "key-w", 60)
    assert await redis.get(KEYS.idempotency("key-w")) == "w"  # the primary has it; nobody was told
    with pytest.raises(NotReplicated):
        await store.accept(job("w2"), "key-w", 60)
    assert await redis.xlen(KEYS.jobs("demo")) == 1
    [result] = await TaskStore(redis, KEYS).accept_many([(job("w2"), "key-w")], 60, confirm=True)
    assert (result.task_id, result.created) == ("w", False)  # no WAIT configured: confirm asks nothing


async def test_a_replay_names_only_a_task_on_the_server_it_runs_on(redis):
    replay = redis.register_script(REPLAY)
    await redis.set(KEYS.idempotency("kept"), "t1")
    keys = [KEYS.events, "", KEYS.idempotency("kept"), KEYS.task("t1")]
    keys += [KEYS.events, KEYS.answered("r2"), KEYS.idempotency("lost"), KEYS.task("t2")]  # lost in a failover
    assert await replay(keys=keys, args=[60, "t1", "{}", "t2", "{}"]) == [1, 0]
    assert [f["task_id"] for _, f in await redis.xrange(KEYS.events)] == ["t1"]
    assert not await redis.exists(KEYS.answered("r2"))


async def test_one_terminal_state_and_event_whoever_races(redis):
    store = TaskStore(redis, KEYS)
    await store.accept(job("t"), None, 60)
    assert await store.claim("t", 1, "w") == "running"
    assert await store.finish(Completed(task_id="t", video_url="v"), {"video_url": "v"})
    assert not await store.finish(Cancelled(task_id="t"), {})
    assert await store.claim("t", 2, "w") == "completed"
    kinds = [f["type"] for _, f in await redis.xrange(KEYS.events) if f["task_id"] == "t"]
    assert kinds == ["accepted", "completed"]
    assert await store.cancel("t") == "already_completed"


async def test_repeats_within_one_batch_map_to_the_first_job(redis):
    store = TaskStore(redis, KEYS)
    batch = [(job("x"), "same-key"), (job("y"), "same-key"), (job("z"), None), (job("z"), None)]
    results = await store.accept_many(batch, 60)
    assert [(r.task_id, r.created) for r in results] == [("x", True), ("x", False), ("z", True), ("z", False)]
    assert await redis.xlen(KEYS.jobs("demo")) == 2
    assert not await redis.exists(KEYS.task("y"))
    replays = [f for _, f in await redis.xrange(KEYS.events) if b'"idempotent_replay":true' in f["payload"].encode()]
    assert sorted(f["task_id"] for f in replays) == ["x", "z"]


async def test_accepted_hash_is_the_queued_task_state(redis):
    store = TaskStore(redis, KEYS)
    accepted = job("h")
    accepted.metadata, accepted.webhook_url, accepted.request_id = {"user": "u1"}, "https://example.com/h", "r1"
    await store.accept(accepted, None, 60)
    raw = await redis.hgetall(KEYS.task("h"))
    at = float(raw["created_at"])
    expected = TaskState(
        task_id="h",
        status="queued",
        task="demo",
        request_id="r1",
        webhook_url="https://example.com/h",
        metadata={"user": "u1"},
        created_at=at,
        updated_at=at,
        priority="normal",
        queue_entry=raw["queue_entry"],
        prompt=accepted.prompt,
        requested_size=f"{accepted.width}*{accepted.height}",
        requested_frames=accepted.frame_num,
    )
    [(entry_id, _)] = await redis.xrange(KEYS.jobs("demo"))
    assert raw["queue_entry"] == entry_id
    assert raw == {k: v for k, v in state_to_hash(expected).items() if k != "task_id"}


async def _terminal_events(redis, task_id: str) -> list[dict]:
    rows = await redis.xrange(KEYS.events)
    return [f for _, f in rows if f["task_id"] == task_id and f["type"] != "accepted"]


async def test_a_queued_task_past_its_deadline_expires_once_and_is_never_claimed(redis):
    store = TaskStore(redis, KEYS)
    late, later, running = job("late"), job("later"), job("running")
    late.deadline_at = running.deadline_at = now() - 1
    later.deadline_at = now() + 3600
    await store.accept_many([(late, None), (later, None), (running, None)], 60)
    assert await store.claim("running", 1, "w") == "failed", "claimed past its deadline: expired, not run"
    assert await store.expire_due() == ["late"]
    assert await store.expire_due() == []
    assert await store.claim("late", 1, "w") == "failed"
    assert await redis.zrange(KEYS.deadlines, 0, -1) == ["later"]
    for task_id in ("late", "running"):
        state = await store.get(task_id)
        assert state is not None and state.status == "failed" and state.error.startswith("expired")
        [event] = await _terminal_events(redis, task_id)
        assert event["type"] == "failed"
        failed = event_decoder.decode(event["payload"])
        assert isinstance(failed, Failed) and failed.error_type == "expired" and failed.attempts == 0
    assert await store.claim("later", 1, "w") == "running"
    assert await store.expire_due() == []


async def test_a_started_task_is_not_expired(redis):
    store = TaskStore(redis, KEYS)
    started = job("s")
    started.deadline_at = now() + 0.05
    await store.accept(started, None, 60)
    assert await store.claim("s", 1, "w") == "running"
    await anyio.sleep(0.1)
    assert await store.expire_due() == []
    assert await redis.zcard(KEYS.deadlines) == 0, "no longer queued: it leaves the set"
    assert (await store.get("s")).status == "running"
    assert await _terminal_events(redis, "s") == []


async def test_a_replayed_dead_letter_runs_however_late(redis):
    store = TaskStore(redis, KEYS)
    late = job("r")
    late.deadline_at = now() + 0.05
    await store.accept(late, None, 60)
    assert await store.claim("r", 1, "w") == "running"
    [(entry_id, fields)] = await redis.xrange(KEYS.jobs("demo"))
    await store.finish(Failed(task_id="r", error="boom"), {"error": "boom"})
    entry = Entry(KEYS.jobs("demo"), entry_id, fields)
    dlq_id = await dead_letter(redis, KEYS, GENERATOR_GROUP, entry, [], "exhausted")
    await anyio.sleep(0.1)  # past the deadline
    assert await store.replay_dead(dlq_id)
    assert await store.claim("r", 1, "w") == "running", "an operator's replay is not expired"
