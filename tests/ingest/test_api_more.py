"""Auth, backpressure, SSE, Redis outage and property-based requests over both doors."""

from __future__ import annotations

import json
import string

import anyio
import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contracts import Completed, Progress, encode
from services.keys import INGEST_GROUP, Keys
from services.tasks import TaskStore
from tests.ingest.test_doors import events_of, wait_for_event
from tests.redis_server import free_port

KEYS = Keys()


async def test_bearer_auth(start_ingest):
    url = start_ingest(WAN22_API_TOKENS="s3cret,other")
    async with httpx.AsyncClient(base_url=url) as http:
        body = {"task": "demo", "prompt": "x"}
        assert (await http.post("/generate", json=body)).status_code == 401
        bad = await http.post("/generate", json=body, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 403 and bad.json()["reason"] == "forbidden"
        ok = await http.post("/generate", json=body, headers={"Authorization": "Bearer other"})
        assert ok.status_code == 202
        assert (await http.get(f"/tasks/{ok.json()['task_id']}")).status_code == 401
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200


async def test_queue_full_is_429_and_rejected_queue_full(redis, start_ingest):
    # Its own prefix: the module's other ingest processes read `wan22:requests` in the same group
    # and would accept the entry this one must reject.
    keys = Keys(prefix="queuefull")
    url = start_ingest(WAN22_MAX_QUEUE_LAG="3", WAN22_PREFIX=keys.prefix)
    async with httpx.AsyncClient(base_url=url) as http:
        statuses = [(await http.post("/generate", json={"task": "demo", "prompt": "x"})).status_code for _ in range(3)]
        with anyio.fail_after(30):  # the lag is refreshed in the background every 0.5 s
            while (full := await http.post("/generate", json={"task": "demo", "prompt": "x"})).status_code == 202:
                await anyio.sleep(0.2)
    assert statuses == [202, 202, 202] and full.status_code == 429
    assert full.headers["retry-after"] and full.json()["reason"] == "queue_full"
    entry_id = await redis.xadd(keys.requests, {"task": "demo", "prompt": "x"})
    rejected = await wait_for_event(redis, "rejected", entry_id, keys=keys)
    assert rejected["reason"] == "queue_full"


async def test_sse_streams_state_progress_and_terminal(redis, ingest_url):
    async with httpx.AsyncClient(base_url=ingest_url, timeout=10) as http:
        task_id = (await http.post("/generate", json={"task": "demo", "prompt": "sse"})).json()["task_id"]
        seen: list[str] = []
        state_sent = anyio.Event()  # the stream follows from its snapshot on: publish after it

        async def publish() -> None:
            await state_sent.wait()
            store = TaskStore(redis, KEYS)
            for step in (1, 2):
                progress = Progress(task_id=task_id, step=step, total=2, percent=step * 50.0)
                await redis.xadd(KEYS.progress, {"type": "progress", "task_id": task_id, "payload": encode(progress)})
            await store.finish(Completed(task_id=task_id, video_url="file:///v.mp4"), {"progress": 100})

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)
            with anyio.fail_after(10):
                async with http.stream("GET", f"/tasks/{task_id}/events") as response:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    async for line in response.aiter_lines():
                        if line.startswith("event: "):
                            seen.append(line[7:])
                        if line.startswith("data: ") and seen == ["state"]:
                            state_sent.set()
    assert seen == ["state", "progress", "progress", "completed"]


async def test_redis_down_gives_503_json(start_ingest):
    url = start_ingest(WAN22_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    async with httpx.AsyncClient(base_url=url, timeout=15) as http:
        ready = await http.get("/readyz")
        post = await http.post("/generate", json={"task": "demo", "prompt": "x"})
        health = await http.get("/healthz")
    assert ready.status_code == 503 and ready.json()["reason"] == "unavailable"
    assert post.status_code == 503 and "Redis" in post.json()["error"]
    assert health.status_code == 200


async def test_concurrent_posts_each_get_their_own_task_and_repeats_the_first(redis, ingest_url):
    """Concurrent requests share Redis round trips; each still maps to exactly one task."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=ingest_url, timeout=15, limits=limits) as http:
        answers: list[httpx.Response] = []

        async def post(i: int) -> None:
            headers = {"Idempotency-Key": f"key-{i % 8}"} if i % 2 else {}
            answers.append(await http.post("/generate", json={"task": "demo", "prompt": f"p{i}"}, headers=headers))

        async with anyio.create_task_group() as tg:
            for i in range(64):
                tg.start_soon(post, i)
    created = [a.json()["task_id"] for a in answers if a.status_code == 202]
    repeats = [a.json() for a in answers if a.status_code == 200]
    assert len(created) == 32 + 4 and len(set(created)) == len(created)  # 32 without keys, 4 distinct keys
    assert len(repeats) == 28 and all(r["duplicate"] and r["task_id"] in created for r in repeats)
    assert await redis.xlen(KEYS.jobs("demo")) == len(created)


text = st.text(alphabet=string.ascii_letters + " ,.'é中", max_size=40)
requests = st.fixed_dictionaries(
    {"task": st.sampled_from(["demo", "i2v-A14B", "t2v-A14B", "nope"])},
    optional={
        "prompt": text,
        "size": st.sampled_from(["64*64", "96*64", "832*480", "1*1", "big"]),
        "seed": st.one_of(st.integers(-5, 2**40), st.text(max_size=3)),
        "frame_num": st.integers(-2, 300),
        "sample_steps": st.integers(-1, 200),
        "guide_scale": st.one_of(st.floats(-1, 60, allow_nan=False), st.lists(st.floats(0, 10), max_size=3)),
        "negative_prompt": text,
        "image": st.sampled_from(["s3://b/k.png", "https://example.com/a.png", "/path/in/pod/a.png", "../x", ""]),
        "webhook_url": st.sampled_from(["https://example.com/h", "http://127.0.0.1:9/h", "http://10.1.1.1/"]),
        "metadata": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
        "bogus": st.integers(),
    },
)


def _flat(request: dict) -> dict[str, str]:
    return {k: json.dumps(v) if isinstance(v, dict | list) else str(v) for k, v in request.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=requests, flat=st.booleans())
async def test_every_request_ends_accepted_or_rejected(redis_server, ingest_url, request, flat):
    """Over both doors: accepted with a normalized job, or rejected with a message; never lost."""
    from services.redisconn import connect

    redis = connect(redis_server.url)
    try:
        async with httpx.AsyncClient(base_url=ingest_url) as http:
            response = await http.post("/generate", json=request)
        if response.status_code in (200, 202):
            task_id = response.json()["task_id"]
            assert (await redis.hgetall(KEYS.task(task_id)))["status"] in ("queued", "cancelled")
        else:
            assert 400 <= response.status_code < 500 and response.json()["error"]
        fields = _flat(request) if flat else {"payload": json.dumps(request)}
        entry_id = await redis.xadd(KEYS.requests, fields)
        with anyio.fail_after(10):
            while True:
                outcomes = [
                    e
                    for kind in ("accepted", "rejected")
                    for e in await events_of(redis, kind)
                    if e.get("request_id") == entry_id
                ]
                if outcomes:
                    break
                await anyio.sleep(0.02)
        assert len(outcomes) == 1
        if "error" in outcomes[0]:
            assert outcomes[0]["error"] and outcomes[0]["reason"]
        else:
            assert await redis.exists(KEYS.task(outcomes[0]["task_id"]))
        with anyio.fail_after(5):
            while int((await redis.xpending(KEYS.requests, INGEST_GROUP))["pending"]):
                await anyio.sleep(0.02)
    finally:
        await redis.aclose()
