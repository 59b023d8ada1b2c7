"""Priorities, deadlines and queue positions through a real ingest process (HTTP, the requests
stream, SSE) and `wan22 status`."""

from __future__ import annotations

import json

import anyio
import httpx

from services.consumer import ensure_group
from services.contracts import Failed, event_decoder, job_decoder
from services.keys import GENERATOR_GROUP, Keys
from services.queueinfo import record_run
from tests.ingest.test_doors import wait_for_event
from tests.operate.test_cli import run_cli

KEYS = Keys()


async def _post(http: httpx.AsyncClient, **fields) -> str:
    response = await http.post("/generate", json={"task": "demo", "prompt": "p"} | fields)
    assert response.status_code == 202, response.text
    return response.json()["task_id"]


async def _queue(http: httpx.AsyncClient, task_id: str) -> dict | None:
    body = (await http.get(f"/tasks/{task_id}")).json()
    return body.get("queue")


async def test_priority_and_deadline_through_both_doors(redis, ingest_url):
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as http:
        soon = await _post(http, priority="high", deadline_s=0.5)
        bad = await http.post("/generate", json={"task": "demo", "prompt": "p", "priority": "urgent"})
        assert bad.status_code == 422 and bad.json()["field"] == "priority"
        flat = {"task": "demo", "prompt": "p", "priority": "low", "deadline_s": "3600"}  # as go-redis sends them
        entry_id = await redis.xadd(KEYS.requests, flat)
        later = (await wait_for_event(redis, "accepted", entry_id))["task_id"]

        [(_, high)] = await redis.xrange(KEYS.jobs("demo", "high"))
        [(_, low)] = await redis.xrange(KEYS.jobs("demo", "low"))
        assert await redis.xlen(KEYS.jobs("demo")) == 0
        high_job, low_job = job_decoder.decode(high["payload"]), job_decoder.decode(low["payload"])
        assert (high_job.task_id, high_job.priority) == (soon, "high")
        assert abs(high_job.deadline_at - high_job.created_at - 0.5) < 1e-3
        assert (low_job.task_id, low_job.priority) == (later, "low")

        with anyio.fail_after(10):  # no generator runs: ingest's sweep expires it
            while (body := (await http.get(f"/tasks/{soon}")).json())["status"] == "queued":
                await anyio.sleep(0.1)
        assert body["status"] == "failed" and body["error"].startswith("expired")
        later_state = (await http.get(f"/tasks/{later}")).json()
        assert later_state["status"] == "queued" and later_state["priority"] == "low"
    terminal = [f for _, f in await redis.xrange(KEYS.events) if f["task_id"] == soon and f["type"] != "accepted"]
    assert [f["type"] for f in terminal] == ["failed"]
    failed = event_decoder.decode(terminal[0]["payload"])
    assert isinstance(failed, Failed) and failed.error_type == "expired"


async def test_queue_position_and_estimate_in_the_api_the_cli_and_sse(redis, redis_url, ingest_url):
    async with httpx.AsyncClient(base_url=ingest_url, timeout=20) as http:
        n1, n2, n3 = [await _post(http) for _ in range(3)]
        h1 = await _post(http, priority="high")
        l1 = await _post(http, priority="low")
        # No generator ever ran (no groups yet): every entry is waiting.
        positions = {t: (await _queue(http, t))["position"] for t in (h1, n1, n2, n3, l1)}
        assert positions == {h1: 1, n1: 2, n2: 3, n3: 4, l1: 5}
        assert (await _queue(http, n3))["eta_s"] is None, "no run times yet: no estimate"

        await record_run(redis, KEYS, "demo", 10.0)
        await record_run(redis, KEYS, "demo", 20.0)
        for stream in KEYS.job_streams("demo"):
            await ensure_group(redis, stream, GENERATOR_GROUP)
        # A generator claims the high job (as its reader does): it is running, one ahead less for all.
        await redis.xreadgroup(GENERATOR_GROUP, "gen-1", {KEYS.jobs("demo", "high"): ">"}, count=1)
        assert await _queue(http, h1) is None
        queue = await _queue(http, n3)
        assert queue == {"position": 3, "ahead": 2, "generators": 1, "run_s": 15.0, "start_in_s": 45.0, "eta_s": 60.0}

        status = await run_cli(redis_url, "status", n3)
        assert status.returncode == 0 and "position 3 (2 ahead), 1 generator" in status.stdout, status.stdout
        as_json = json.loads((await run_cli(redis_url, "status", l1, "--json")).stdout)
        assert as_json["queue"]["position"] == 4

        frames: list[tuple[str, dict]] = []
        state_sent = anyio.Event()  # claim only after the snapshot, or no `queue` update follows

        async def claim_one_normal() -> None:
            await state_sent.wait()
            await redis.xreadgroup(GENERATOR_GROUP, "gen-2", {KEYS.jobs("demo"): ">"}, count=1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(claim_one_normal)
            with anyio.fail_after(15):
                async with http.stream("GET", f"/tasks/{n3}/events") as response:
                    kind = ""
                    async for line in response.aiter_lines():
                        kind = line[7:] if line.startswith("event: ") else kind
                        if line.startswith("data: "):
                            frames.append((kind, json.loads(line[6:])))
                            state_sent.set()
                            if kind == "queue":
                                break
    (_, state), (_, update) = frames
    assert [kind for kind, _ in frames] == ["state", "queue"]
    assert state["status"] == "queued" and state["queue"]["position"] == 3
    assert update["position"] == 2 and update["generators"] == 2
