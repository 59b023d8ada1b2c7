"""A CFG-parallel gang in the generator: the demo task with cfg_degree 2 over world size 2 (one
rank per pass), on real Ray and Redis. The layout survives the gang's rebuild after a rank dies."""

from __future__ import annotations

import os
import signal

import anyio
import pytest

from tests.generator.conftest import Generator, StartGenerator
from tests.generator.helpers import KEYS, events_for, submit, wait_drained, wait_status, wait_step


@pytest.fixture(scope="module")
def generator(start_generator: StartGenerator) -> Generator:
    return start_generator(cfg_degree=2)


async def _rank_pid(redis, rank: int) -> str:
    with anyio.fail_after(10):
        while not (gang_keys := [key async for key in redis.scan_iter(f"{KEYS.prefix}:gang:*")]):
            await anyio.sleep(0.2)
    [gang_key] = gang_keys
    with anyio.fail_after(10):
        while not (member := await redis.hget(gang_key, str(rank))):
            await anyio.sleep(0.2)
    return member.rsplit(":", 1)[1]


async def _single_pass_job_fails_with_the_reason(redis) -> None:
    """A job that skipped ingest's check: every rank refuses it before any collective, the gang
    stays (no rank is left waiting) and the job fails after its attempts."""
    task_id = await submit(redis, steps=2, guide_scale=(1.0, 1.0), max_attempts=1)
    state = await wait_status(redis, task_id, {"failed", "completed"})
    assert state["status"] == "failed" and "guidance 1.0 for the expert" in state["error"], state


async def test_guidance_one_is_refused_and_the_gang_stays(redis, generator) -> None:
    before = await _rank_pid(redis, 1)
    await _single_pass_job_fails_with_the_reason(redis)
    task_id = await submit(redis, steps=4)
    assert (await wait_status(redis, task_id, {"failed", "completed"}))["status"] == "completed"
    assert await _rank_pid(redis, 1) == before  # the same gang ran both
    await wait_drained(redis)


async def test_killed_rank_of_the_unconditional_half_rebuilds_the_cfg_parallel_gang(redis, generator) -> None:
    pid = await _rank_pid(redis, 1)
    # One pass per rank and step makes a step of the tiny model short: the most steps, more frames.
    task_id = await submit(redis, steps=100, frames=9)
    await wait_step(redis, task_id, 3)
    os.kill(int(pid), signal.SIGKILL)
    state = await wait_status(redis, task_id, {"completed", "failed"}, timeout=240)
    assert state["status"] == "completed", state
    kinds = [kind for kind, _ in await events_for(redis, task_id)]
    assert kinds.count("completed") == 1 and kinds.index("retrying") < kinds.index("completed")
    assert await _rank_pid(redis, 1) != pid  # a new gang ran it ...
    await _single_pass_job_fails_with_the_reason(redis)  # ... with cfg_degree 2 again
    await wait_drained(redis)
