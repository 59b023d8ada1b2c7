"""`wan22 demo`: the whole stack with the tiny demo task, one prompt through it end to end, then
everything stopped again."""

from __future__ import annotations

import sys
import time
from urllib.parse import urlparse

import anyio
import httpx

from services.cli.tasks_cmd import wait_for
from services.keys import Keys
from services.redisconn import connect
from services.stack.defaults import DEMO_TASK
from services.stack.up import Stack, StackOptions

READY_TIMEOUT_S = 600.0


async def run_demo(options: StackOptions, prompt: str) -> int:
    options.only = [DEMO_TASK]
    stack = Stack(options)
    await stack.start()
    code = 1
    async with anyio.create_task_group() as tg:
        tg.start_soon(stack.run)
        try:
            code = await _one_video(stack, prompt)
        finally:
            stack.stop()
    return code


async def _one_video(stack: Stack, prompt: str) -> int:
    started = time.monotonic()
    _say("starting ingest, notifier and the demo generator (first start loads the model) ...")
    await stack.wait_ready(READY_TIMEOUT_S)
    _say(f"stack ready in {time.monotonic() - started:.0f} s; submitting: {prompt!r}")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        response = await http.post("/generate", json={"task": DEMO_TASK, "prompt": prompt})
    response.raise_for_status()
    task_id = response.json()["task_id"]
    _say(f"task {task_id} queued")
    redis = connect(stack.env["WAN22_REDIS_URL"])
    try:
        code = await wait_for(redis, Keys(), task_id)
        state = await redis.hgetall(Keys().task(task_id))
    finally:
        await redis.aclose()
    if code == 0:
        _say(f"video:     {_path(str(state['video_url']))}")
        _say(f"poster:    {_path(str(state['poster_url']))}")
        _say(f"dashboard: {stack.api_url}/ui  (while `wan22 up` runs)")
        _say(f"done in {time.monotonic() - started:.0f} s")
    return code


def _path(url: str) -> str:
    return urlparse(url).path if url.startswith("file://") else url


def _say(text: str) -> None:
    print(f"demo      | {text}", file=sys.stderr, flush=True)
