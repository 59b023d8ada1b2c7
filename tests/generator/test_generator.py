"""The generator against real Redis, a real Ray cluster and a tiny Wan model at world size 2."""

from __future__ import annotations

import base64
import os
import signal
import time
from pathlib import Path
from urllib.parse import urlparse

import anyio

from services.consumer import list_dead
from services.keys import GENERATOR_GROUP
from services.tasks import TaskStore
from tests.generator.helpers import (
    KEYS,
    events_for,
    pending,
    progress_steps,
    progress_times,
    submit,
    wait_drained,
    wait_status,
    wait_step,
)
from wan.video import probe_mp4


def png_data_url(width: int, height: int) -> str:
    import base64
    import io

    import numpy as np
    from PIL import Image

    # A smooth picture: it compresses small enough for the job's 4 KiB image reference.
    rows = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None]
    pixels = np.broadcast_to(rows, (height, width, 3)).copy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def test_job_runs_on_the_gang_and_completes_once(redis, generator):
    task_id = await submit(redis, steps=4)
    state = await wait_status(redis, task_id, {"completed", "failed"})
    assert state["status"] == "completed", state
    video = Path(urlparse(state["video_url"]).path)
    assert video.is_file() and Path(urlparse(state["poster_url"]).path).is_file()
    assert probe_mp4(video.read_bytes())[:3] == (5, 64, 64)
    assert await progress_steps(redis, task_id) == [1, 2, 3, 4]
    kinds = [kind for kind, _ in await events_for(redis, task_id)]
    assert kinds == ["accepted", "started", "completed"]
    assert float(state["progress"]) == 100.0
    assert (state["width"], state["height"], state["frame_num"], state["fps"]) == ("64", "64", "5", "24")
    [completed] = [event for kind, event in await events_for(redis, task_id) if kind == "completed"]
    assert (completed["width"], completed["height"], completed["frame_num"], completed["fps"]) == (64, 64, 5, 24)
    await wait_drained(redis)


async def test_malformed_job_entries_are_dead_lettered_and_the_next_job_runs(redis, generator):
    """A producer's bytes on any priority stream: dead-lettered as written, the gang keeps working."""
    hostile = {
        KEYS.jobs("demo", "high"): [b"type", b"job", b"task_id", b"t-bad", b"payload", b"\x00\xff not json"],
        KEYS.jobs("demo"): [b"\xff", b"\xfe"],
        KEYS.jobs("demo", "low"): [b"type", b"job", b"payload", b'{"task_id": 5}'],
    }
    for stream, flat in hostile.items():
        await redis.execute_command("XADD", stream, "*", *flat)
    task_id = await submit(redis, steps=2)
    assert (await wait_status(redis, task_id, {"completed", "failed"}))["status"] == "completed"
    with anyio.fail_after(30):
        while len(letters := await list_dead(redis, KEYS)) < len(hostile):
            await anyio.sleep(0.1)
    by_stream = {letter.stream: letter for _, letter in letters}
    assert set(by_stream) == set(hostile) and {d.reason for d in by_stream.values()} == {"undecodable"}
    high = by_stream[KEYS.jobs("demo", "high")]
    assert [base64.b64decode(f.value_b64) for f in high.raw_fields or []][-1] == b"\x00\xff not json"
    assert await redis.exists(KEYS.task("t-bad")) == 0  # a malformed entry's task_id names no task
    for stream in hostile:
        assert int((await redis.xpending(stream, GENERATOR_GROUP))["pending"]) == 0
    assert generator.proc.proc is not None and generator.proc.proc.poll() is None


async def test_image_job_reports_the_size_that_follows_the_image(redis, generator):
    # ti2v at 64*64 with a 1:3 portrait image: the release's best_output_size gives 32*96.
    task_id = await submit(redis, steps=2, image=png_data_url(40, 120))
    state = await wait_status(redis, task_id, {"completed", "failed"})
    assert state["status"] == "completed", state.get("error")
    assert (state["width"], state["height"]) == ("32", "96")
    video = Path(urlparse(state["video_url"]).path)
    assert probe_mp4(video.read_bytes())[:3] == (5, 32, 96)
    [completed] = [event for kind, event in await events_for(redis, task_id) if kind == "completed"]
    assert (completed["width"], completed["height"]) == (32, 96)


async def test_redelivered_job_of_a_terminal_task_is_only_acked(redis, generator):
    task_id = await submit(redis, steps=4)
    await wait_status(redis, task_id, {"completed"})
    [(_, fields)] = [row for row in await redis.xrange(KEYS.jobs("demo"))]
    await redis.xadd(KEYS.jobs("demo"), fields)  # the same job delivered again
    for _ in range(50):
        if await pending(redis) == 0 and len(await redis.xrange(KEYS.jobs("demo"))) == 2:
            break
    state = await wait_status(redis, task_id, {"completed"})
    await wait_drained(redis)
    kinds = [kind for kind, _ in await events_for(redis, task_id)]
    assert kinds.count("completed") == 1 and state["status"] == "completed"


async def test_cancel_mid_run_stops_within_a_step(redis, generator):
    task_id = await submit(redis, steps=40)
    await wait_step(redis, task_id, 2)
    cancelled_at = time.time()
    outcome = await TaskStore(redis, KEYS).cancel(task_id)
    state = await wait_status(redis, task_id, {"cancelled", "completed"})
    assert outcome == "cancelling" and state["status"] == "cancelled"
    after = [step for step, ts in await progress_times(redis, task_id) if ts > cancelled_at]
    # The step in flight, and one more if it ended as the flag was set; a loaded machine may starve
    # the thread that polls the flag (every 10 ms) for a step or two of the tiny model.
    assert len(after) <= 4
    assert max(step for step, _ in await progress_times(redis, task_id)) < 40
    assert not state.get("video_url")
    assert not (generator.storage / task_id).exists()
    kinds = [kind for kind, _ in await events_for(redis, task_id)]
    assert kinds == ["accepted", "started", "cancelled"]
    await wait_drained(redis)


async def test_killed_rank_rebuilds_the_gang_and_the_job_completes(redis, generator):
    task_id = await submit(redis, steps=30)
    await wait_step(redis, task_id, 3)
    with anyio.fail_after(10):
        while not (gang_keys := [key async for key in redis.scan_iter(f"{KEYS.prefix}:gang:*")]):
            await anyio.sleep(0.2)
    [gang_key] = gang_keys
    _, pid = (await redis.hget(gang_key, "1")).rsplit(":", 1)
    os.kill(int(pid), signal.SIGKILL)
    state = await wait_status(redis, task_id, {"completed", "failed"}, timeout=240)
    assert state["status"] == "completed", state
    kinds = [kind for kind, _ in await events_for(redis, task_id)]
    assert kinds.count("completed") == 1 and "retrying" in kinds
    assert kinds.index("retrying") < kinds.index("completed")
    with anyio.fail_after(10):
        while not await redis.hget(gang_key, "1"):
            await anyio.sleep(0.2)
    new_pid = (await redis.hget(gang_key, "1")).rsplit(":", 1)[1]
    assert new_pid != pid  # a new gang ran it
    await wait_drained(redis)
