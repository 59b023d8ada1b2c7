"""The generator against real Redis, a real Ray cluster and a tiny Wan model at world size 2."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from tests.generator.helpers import KEYS, events_for, pending, progress_steps, submit, wait_status
from wan.video import probe_mp4


async def test_job_runs_on_the_gang_and_completes_once(redis, start_generator):
    generator = start_generator()
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
    assert await pending(redis) == 0
    members = await redis.hgetall(KEYS.gang(next(iter(await _gang_keys(redis)))))
    assert set(members) == {"0", "1"}
    assert generator.proc.proc.poll() is None


async def _gang_keys(redis) -> list[str]:
    return [key.removeprefix(f"{KEYS.prefix}:gang:") async for key in redis.scan_iter(f"{KEYS.prefix}:gang:*")]
