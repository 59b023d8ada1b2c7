"""Generator faults: a killed driver, jobs that keep failing, S3 storage, shutdown."""

from __future__ import annotations

import signal
import time

import pytest

from services.consumer import list_dead
from services.tasks import TaskStore
from tests.generator.helpers import KEYS, events_for, pending, submit, wait_drained, wait_status, wait_step
from tests.s3_server import S3_ENV, S3Server
from wan.video import probe_mp4


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    yield server
    server.stop()


async def test_killed_generator_job_is_reclaimed_by_another(redis, start_generator):
    gangs = [start_generator(wait=False), start_generator(wait=False)]
    for gang in gangs:
        gang.wait_ready()
    task_id = await submit(redis, steps=40)
    await wait_step(redis, task_id, 2)
    worker = (await redis.hgetall(KEYS.task(task_id)))["worker"]
    [first] = [g for g in gangs if f"-{g.proc.proc.pid}-" in worker]
    [second] = [g for g in gangs if g is not first]
    first.proc.stop(signal.SIGKILL)
    try:
        state = await wait_status(redis, task_id, {"completed", "failed"}, timeout=240)
        assert state["status"] == "completed", state
        assert f"-{second.proc.proc.pid}-" in state["worker"]
        kinds = [kind for kind, _ in await events_for(redis, task_id)]
        assert kinds.count("completed") == 1
        await wait_drained(redis)
    finally:
        second.proc.stop()  # not left to compete for the module's later jobs


async def test_failing_job_is_retried_dead_lettered_and_replayed_into_s3(redis, start_generator, s3):
    env = S3_ENV | {"WAN22_STORAGE": "s3://videos/out", "WAN22_S3_ENDPOINT_URL": s3.url}
    generator = start_generator(max_attempts=2, **env)
    try:
        await _fail_then_replay(redis, s3)
    finally:
        generator.proc.stop()


async def _fail_then_replay(redis, s3: S3Server) -> None:
    task_id = await submit(redis, steps=2, max_attempts=2)
    state = await wait_status(redis, task_id, {"failed", "completed"})
    assert state["status"] == "failed" and "NoSuchBucket" in state["error"]
    kinds = [kind for kind, _ in await events_for(redis, task_id)]
    assert kinds == ["accepted", "started", "retrying", "started", "failed"]
    await wait_drained(redis)  # the failed state is written just before the dead letter and its ack
    [(dlq_id, letter)] = await list_dead(redis, KEYS)
    assert letter.task_id == task_id and letter.attempts == 2 and letter.reason == "exhausted"

    s3.client().create_bucket(Bucket="videos")  # the fix
    assert await TaskStore(redis, KEYS).replay_dead(dlq_id)
    state = await wait_status(redis, task_id, {"completed"})
    assert state["video_url"] == f"s3://videos/out/{task_id}/video.mp4"
    body = s3.client().get_object(Bucket="videos", Key=f"out/{task_id}/video.mp4")
    assert body["ContentType"] == "video/mp4"
    assert probe_mp4(body["Body"].read())[0] == 5
    assert await redis.xlen(KEYS.dlq) == 0


async def test_sigterm_idle_exits_fast_and_busy_hands_the_job_back(redis, start_generator):
    idle = start_generator()
    started = time.monotonic()
    assert idle.proc.stop(signal.SIGTERM) == 0
    idle_exit_s = time.monotonic() - started

    busy = start_generator(WAN22_GRACE_S="1")
    task_id = await submit(redis, steps=60)
    await wait_step(redis, task_id, 2)
    started = time.monotonic()
    assert busy.proc.stop(signal.SIGTERM) == 0
    busy_exit_s = time.monotonic() - started
    state = await redis.hgetall(KEYS.task(task_id))
    assert state["status"] == "running" and await pending(redis) == 1  # not acked, not finished
    rows = await redis.xpending_range(KEYS.jobs("demo"), "generator", min="-", max="+", count=1)
    assert rows[0]["time_since_delivered"] >= 3000  # handed back: claimable at once

    rescuer = start_generator()
    try:
        state = await wait_status(redis, task_id, {"completed", "failed"}, timeout=240)
        assert state["status"] == "completed"
    finally:
        rescuer.proc.stop()
    print(f"SIGTERM exit: idle {idle_exit_s:.2f} s, busy {busy_exit_s:.2f} s (grace 1 s)")
    # Generous bounds for a loaded machine: the busy exit includes the 1 s grace and the gang's
    # teardown (up to 10 s); what matters is that neither waits for the job to finish (60 steps).
    assert idle_exit_s < 10 and busy_exit_s < 15
