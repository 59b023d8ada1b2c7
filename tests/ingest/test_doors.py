"""Both front doors of a real ingest process: HTTP and the requests stream."""

from __future__ import annotations

import base64
import json

import anyio
import httpx
import pytest

from services.contracts import Completed, job_decoder
from services.keys import INGEST_GROUP, Keys
from services.tasks import TaskStore
from wan.presets import RELEASE_NEGATIVE_PROMPT

KEYS = Keys()
CURL_BODY = {  # the original design's curl body, verbatim
    "task": "i2v-A14B",
    "prompt": "a beautiful cat",
    "ckpt_dir": "/data/Wan2.2-I2V-A14B",
    "image": "/path/in/pod/to/image.jpg",
    "size": "832*480",
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()


async def events_of(redis, kind: str, keys: Keys = KEYS) -> list[dict]:
    return [json.loads(f["payload"]) | {"id": i} for i, f in await redis.xrange(keys.events) if f["type"] == kind]


async def wait_for_event(redis, kind: str, request_id: str, timeout: float = 10.0, keys: Keys = KEYS) -> dict:
    with anyio.fail_after(timeout):
        while True:
            for event in await events_of(redis, kind, keys):
                if event.get("request_id") == request_id:
                    return event
            await anyio.sleep(0.02)


async def jobs(redis, task: str) -> list:
    return [job_decoder.decode(f["payload"]) for _, f in await redis.xrange(KEYS.jobs(task))]


async def ingest_pending(redis) -> int:
    try:
        return int((await redis.xpending(KEYS.requests, INGEST_GROUP))["pending"])
    except Exception:
        return 0


async def test_original_curl_body_is_accepted_and_normalized(redis, ingest_url):
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        response = await http.post("/generate", json=CURL_BODY)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "task_started" and body["task_id"]
    [job] = await jobs(redis, "i2v-A14B")
    assert job.task_id == body["task_id"]
    assert (job.width, job.height, job.frame_num, job.sample_steps) == (832, 480, 81, 40)
    assert (job.sample_shift, job.guide_scale, job.fps) == (5.0, (3.5, 3.5), 16)
    assert job.image == "/path/in/pod/to/image.jpg"
    assert job.negative_prompt == RELEASE_NEGATIVE_PROMPT  # empty means the release's default
    state = await redis.hgetall(KEYS.task(job.task_id))
    assert state["status"] == "queued" and state["task"] == "i2v-A14B"
    [accepted] = await events_of(redis, "accepted")
    assert accepted["task_id"] == job.task_id and accepted["request_id"] == body["request_id"]


async def test_flat_fields_as_go_redis_sends_them(redis, ingest_url):
    fields = {
        "task": "demo",
        "prompt": "a red fox",
        "size": "96*64",
        "seed": "42",
        "frame_num": "9",
        "guide_scale": "4.5",
        "task_id": "go-123",
        "metadata": '{"user": "u1"}',
    }
    entry_id = await redis.xadd(KEYS.requests, fields)
    accepted = await wait_for_event(redis, "accepted", entry_id)
    assert accepted["task_id"] == "go-123"
    [job] = await jobs(redis, "demo")
    assert (job.width, job.height, job.seed, job.frame_num, job.guide_scale) == (96, 64, 42, 9, (4.5, 4.5))
    assert job.metadata == {"user": "u1"} and job.fps == 24
    assert job.negative_prompt == "blurry, static"  # the task's own default from the models file
    with anyio.fail_after(5):
        while await ingest_pending(redis):
            await anyio.sleep(0.02)


async def test_payload_field_entry(redis, ingest_url):
    payload = json.dumps({"task": "demo", "prompt": "waves", "image": f"data:image/png;base64,{PNG}"})
    entry_id = await redis.xadd(KEYS.requests, {"payload": payload})
    accepted = await wait_for_event(redis, "accepted", entry_id)
    [job] = await jobs(redis, "demo")
    assert job.task_id == accepted["task_id"] and job.image.startswith("data:image/png")


STREAM_REJECTS = [
    ({"payload": "{not json"}, None, "malformed"),
    ({"task": "t9v", "prompt": "x"}, "task", "invalid"),
    ({"task": "demo", "prompt": "x", "size": "1*1"}, "size", "invalid"),
    ({"task": "demo", "prompt": "x", "frame_num": "8"}, "frame_num", "invalid"),
    ({"task": "demo", "prompt": "x", "seed": "soon"}, "seed", "invalid"),
    ({"task": "demo", "prompt": ""}, "prompt", "invalid"),
    ({"task": "demo", "prompt": "x" * 5000}, "prompt", "too_large"),
    ({"task": "demo", "prompt": "x", "frames": "9"}, "frames", "invalid"),
    ({"task": "i2v-A14B", "prompt": "x", "image": "/path/in/pod/../etc/passwd"}, "image", "invalid"),
    ({"task": "i2v-A14B", "prompt": "x", "image": "/etc/passwd"}, "image", "invalid"),
    ({"task": "i2v-A14B", "prompt": "x"}, "image", "invalid"),
    ({"task": "i2v-A14B", "prompt": "x", "image": "s3://b/k", "ckpt_dir": "/tmp/evil"}, "ckpt_dir", "invalid"),
    ({"task": "demo", "prompt": "x", "webhook_url": "http://10.0.0.1/hook"}, "webhook_url", "invalid"),
    ({"task": "demo", "prompt": "x", "webhook_url": "ftp://example.com/"}, "webhook_url", "invalid"),
    ({"task": "demo", "prompt": "x", "metadata": "not json"}, "metadata", "invalid"),
    ({"prompt": "no task"}, "task", "invalid"),
]


@pytest.mark.parametrize(("fields", "field", "reason"), STREAM_REJECTS)
async def test_stream_rejections_name_the_field(redis, ingest_url, fields, field, reason):
    entry_id = await redis.xadd(KEYS.requests, fields)
    rejected = await wait_for_event(redis, "rejected", entry_id)
    assert rejected["field"] == field and rejected["reason"] == reason and rejected["error"]
    assert await redis.xlen(KEYS.jobs("demo")) == 0
    with anyio.fail_after(5):
        while await ingest_pending(redis):
            await anyio.sleep(0.02)


async def test_stream_rejection_with_task_id_records_state(redis, ingest_url):
    entry_id = await redis.xadd(KEYS.requests, {"task": "demo", "prompt": "x", "size": "2*2", "task_id": "bad-1"})
    rejected = await wait_for_event(redis, "rejected", entry_id)
    assert rejected["task_id"] == "bad-1"
    state = await redis.hgetall(KEYS.task("bad-1"))
    assert state["status"] == "rejected" and state["field"] == "size" and "64*64" in state["error"]


HTTP_REJECTS = [
    (b"{nope", 400, None),
    (json.dumps({"task": "demo", "prompt": "x", "size": "1280*720"}).encode(), 422, "size"),
    (json.dumps({"task": "demo", "prompt": "x", "seed": "abc"}).encode(), 422, "seed"),
    (json.dumps({"task": "demo", "prompt": "x", "frame_num": 6}).encode(), 422, "frame_num"),
    (json.dumps({"task": "demo", "prompt": "x", "image": "file:///etc/passwd"}).encode(), 422, "image"),
    (
        json.dumps({"task": "demo", "prompt": "x", "webhook_url": "http://169.254.169.254/"}).encode(),
        422,
        "webhook_url",
    ),
    (json.dumps({"task": "demo", "prompt": "x", "duration": 5}).encode(), 422, "duration"),
    (json.dumps({"task": "demo", "prompt": "x", "image": "data:image/png;base64,!!!"}).encode(), 422, "image"),
]


@pytest.mark.parametrize(("body", "status", "field"), HTTP_REJECTS)
async def test_http_rejections_are_4xx_json_naming_the_field(redis, ingest_url, body, status, field):
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        response = await http.post("/generate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()
    assert error["field"] == field and error["error"]
    assert await redis.xlen(KEYS.jobs("demo")) == 0


async def test_oversized_body_is_413(redis, ingest_url):
    body = json.dumps({"task": "demo", "prompt": "x", "negative_prompt": "y" * 70000})
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        response = await http.post("/generate", content=body)
    assert response.status_code == 413 and response.json()["reason"] == "too_large"
    entry_id = await redis.xadd(KEYS.requests, {"task": "demo", "prompt": "x" * 70000})
    rejected = await wait_for_event(redis, "rejected", entry_id)
    assert rejected["reason"] == "too_large"


async def test_idempotency_key_and_task_id_queue_once(redis, ingest_url):
    body = {"task": "demo", "prompt": "same again"}
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        first = await http.post("/generate", json=body, headers={"Idempotency-Key": "k-1"})
        second = await http.post("/generate", json=body, headers={"Idempotency-Key": "k-1"})
        third = await http.post("/generate", json=body | {"task_id": "fixed-1"})
        fourth = await http.post("/generate", json=body | {"task_id": "fixed-1"})
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["task_id"] == second.json()["task_id"] and second.json()["duplicate"] is True
    assert third.json()["task_id"] == fourth.json()["task_id"] == "fixed-1"
    assert len(await jobs(redis, "demo")) == 2
    entry_id = await redis.xadd(KEYS.requests, {"task": "demo", "prompt": "again", "task_id": "fixed-1"})
    replay = await wait_for_event(redis, "accepted", entry_id)
    assert replay["task_id"] == "fixed-1" and replay["idempotent_replay"] is True
    assert len(await jobs(redis, "demo")) == 2


async def test_task_state_cancel_and_404(redis, ingest_url):
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        task_id = (await http.post("/generate", json={"task": "demo", "prompt": "p"})).json()["task_id"]
        state = (await http.get(f"/tasks/{task_id}")).json()
        assert state["status"] == "queued" and state["progress"] == 0
        cancel = await http.delete(f"/tasks/{task_id}")
        assert cancel.status_code == 200 and cancel.json()["status"] == "cancelled"
        assert (await http.get(f"/tasks/{task_id}")).json()["status"] == "cancelled"
        again = await http.delete(f"/tasks/{task_id}")
        assert again.status_code == 409 and again.json()["field"] == "task_id"
        assert (await http.get("/tasks/nope")).status_code == 404
        assert (await http.delete("/tasks/nope")).status_code == 404
    [cancelled] = await events_of(redis, "cancelled")
    assert cancelled["task_id"] == task_id
    assert await redis.exists(KEYS.cancel(task_id))  # a worker that gets the job only acks it


async def test_task_state_reports_the_video_a_completed_task_made(redis, ingest_url):
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        task_id = (await http.post("/generate", json={"task": "demo", "prompt": "p"})).json()["task_id"]
        # What the generator writes on completion (services.generator.worker, through TaskStore.finish).
        completed = Completed(task_id=task_id, video_url="s3://v", width=32, height=96, frame_num=5, fps=24)
        fields = {"video_url": "s3://v", "width": 32, "height": 96, "frame_num": 5, "fps": 24}
        assert await TaskStore(redis, KEYS).finish(completed, fields)
        state = (await http.get(f"/tasks/{task_id}")).json()
    assert state["status"] == "completed"
    assert (state["width"], state["height"], state["frame_num"], state["fps"]) == (32, 96, 5, 24)


async def test_health_ready_metrics_openapi(ingest_url):
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).status_code == 200
        metrics = (await http.get("/metrics")).text
        assert "wan22_requests_total" in metrics
        spec = (await http.get("/openapi.json")).json()
    assert {"/generate", "/tasks/{task_id}", "/tasks/{task_id}/events", "/readyz"} <= set(spec["paths"])
    assert "GenerateRequest" in spec["components"]["schemas"]


async def test_other_methods_on_generate_are_405_and_chunked_bodies_count(redis, ingest_url):
    async with httpx.AsyncClient(base_url=ingest_url) as http:
        assert (await http.get("/generate")).status_code == 405

        def chunks(n: int):  # no content-length: the limit applies to what arrives
            async def body():
                for _ in range(n):
                    yield b" " * 4096
                yield json.dumps({"task": "demo", "prompt": "chunked"}).encode()

            return body()

        headers = {"content-type": "application/json"}
        small = await http.post("/generate", content=chunks(8), headers=headers)
        assert small.status_code == 202 and small.json()["task_id"]
        large = await http.post("/generate", content=chunks(20), headers=headers)  # over the 64 KiB test limit
        assert large.status_code == 413 and large.json()["reason"] == "too_large"
    assert await redis.xlen(KEYS.jobs("demo")) == 1
