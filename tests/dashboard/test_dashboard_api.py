"""The dashboard's JSON endpoints over HTTP against a real ingest process and redis-server: the
task page, search and filters, charts, dead-letter replay and purge, auth and bad input. The
generator's side of a task is written with the same TaskStore calls a generator makes; webhook
deliveries come from a real notifier posting to a real HTTP receiver."""

from __future__ import annotations

import base64
import io

import anyio
import httpx
import pytest

from services.contracts import (
    Completed,
    Failed,
    Progress,
    Retrying,
    Started,
    encode,
    event_entry,
)
from services.keys import GENERATOR_GROUP, Keys
from services.notifier import subscriptions
from services.tasks import TaskStore
from tests.dashboard.helpers import dead_letter_t2v_job
from tests.notifier.conftest import make_settings, running, wait_until
from tests.notifier.receiver import Receiver

KEYS = Keys()


@pytest.fixture(scope="module")
def url(start_ingest) -> str:
    return start_ingest()


@pytest.fixture
def receiver():
    server = Receiver().start()
    yield server
    server.close()


def png_data_url(width: int = 48, height: int = 32) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def submit(http: httpx.AsyncClient, **body) -> str:
    response = await http.post("/generate", json={"task": "demo", "prompt": "a fox"} | body)
    assert response.status_code == 202, response.text
    return response.json()["task_id"]


async def run_attempt(redis, task_id: str, attempt: int, worker: str, steps: int) -> None:
    """What a generator writes for one attempt: claim, `started` at step 1, progress entries."""
    await TaskStore(redis, KEYS).claim(task_id, attempt, worker)
    await redis.xadd(KEYS.events, event_entry(Started(task_id=task_id, attempt=attempt, worker=worker)))
    for step in range(1, steps + 1):
        progress = Progress(task_id=task_id, step=step, total=steps, percent=100 * step / steps, attempt=attempt)
        await redis.xadd(KEYS.progress, {"type": "progress", "task_id": task_id, "payload": encode(progress)})


def error_of(response: httpx.Response) -> tuple[int, str | None, str]:
    body = response.json()
    return response.status_code, body["field"], body["reason"]


async def test_every_dashboard_endpoint_authorizes_like_the_api(start_ingest):
    url = start_ingest(WAN22_API_TOKENS="tok")
    calls = [
        ("GET", "/ui/api/tasks"),
        ("GET", "/ui/api/tasks/abc"),
        ("GET", "/ui/api/charts"),
        ("POST", "/ui/api/dlq/1-0/replay"),
        ("POST", "/ui/api/dlq/purge"),
        ("POST", "/ui/api/webhooks/dlq/1-0/replay"),
        ("POST", "/ui/api/webhooks/dlq/purge"),
    ]
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for method, path in calls:
            assert (await http.request(method, path)).status_code == 401, path
            bad = await http.request(method, path, headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 403, path
            ok = await http.request(method, path, headers={"Authorization": "Bearer tok"}, json={"all": True})
            assert ok.status_code in (200, 404), (path, ok.text)
        assert (await http.get("/ui/api/charts?access_token=tok")).status_code == 200


async def test_task_page_has_parameters_timeline_attempts_and_webhook_deliveries(redis, redis_url, url, receiver):
    sub = await subscriptions.add(redis, KEYS, receiver.url("/fail/sub"), ["completed"], None)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http, running(redis, make_settings(redis_url)):
        image = png_data_url()
        task_id = await submit(
            http,
            image=image,
            size="96*64",
            frame_num=5,
            sample_steps=3,
            seed=7,
            negative_prompt="blurry",
            guide_scale=4.5,
            priority="high",
            webhook_url=receiver.url("/ok/task"),
        )
        await run_attempt(redis, task_id, 1, "gen-a", 2)
        await TaskStore(redis, KEYS).retrying(Retrying(task_id=task_id, attempt=1, max_attempts=3, error="CUDA OOM"))
        await run_attempt(redis, task_id, 2, "gen-b", 3)
        done = Completed(task_id=task_id, video_url="file:///elsewhere/v.mp4", duration_s=1.5, attempt=2)
        await TaskStore(redis, KEYS).finish(done, {"progress": 100.0, "video_url": done.video_url})

        async def settled() -> bool:
            hooks = (await http.get(f"/ui/api/tasks/{task_id}")).json()["webhooks"]
            return {(h["target"], h["event"], h["status"]) for h in hooks} >= {
                ("task", "completed", "delivered"),
                (sub.id, "completed", "dead"),
            }

        await wait_until(settled, timeout=20)
        detail = (await http.get(f"/ui/api/tasks/{task_id}")).json()

    params = detail["params"]
    assert (params["seed"], params["sample_steps"], params["frame_num"], params["priority"]) == (7, 3, 5, "high")
    assert params["negative_prompt"] == "blurry" and params["guide_scale"] == [4.5, 4.5]
    assert params["image"].startswith("data:image/png;base64,") and f"({len(image)} characters)" in params["image"]
    kinds = [e["type"] for e in detail["timeline"]]
    assert kinds == ["accepted", "started", *["progress"] * 2, "retrying", "started", *["progress"] * 3, "completed"]
    assert detail["timeline"][4]["error"] == "CUDA OOM"
    first, second = detail["attempts"]
    assert (first["worker"], first["outcome"], first["error"]) == ("gen-a", "retrying", "CUDA OOM")
    assert (second["worker"], second["outcome"]) == ("gen-b", "completed")
    assert detail["state"]["status"] == "completed" and detail["state"]["worker"] == "gen-b"
    hooks = {(h["target"], h["event"]): h for h in detail["webhooks"]}
    delivered = hooks[("task", "completed")]
    assert delivered["url"] == receiver.url("/ok/task") and delivered["attempts"][0]["status"] == 200
    assert hooks[("task", "started")]["status"] == "delivered"
    dead = hooks[(sub.id, "completed")]
    assert dead["dlq_id"] and dead["attempts"] and {a["status"] for a in dead["attempts"]} == {500}

    # Replaying the webhook dead letter schedules the same delivery again and empties the DLQ.
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        replay = await http.post(f"/ui/api/webhooks/dlq/{dead['dlq_id']}/replay")
        assert replay.status_code == 200 and replay.json()["delivery_id"] == dead["delivery_id"]
        again = await http.post(f"/ui/api/webhooks/dlq/{dead['dlq_id']}/replay")
        assert error_of(again) == (404, "dlq_id", "not_found")
    assert await redis.xrange(KEYS.webhook_dlq) == []
    assert await redis.hget(KEYS.webhook_delivery(dead["delivery_id"]), "status") == "pending"
    assert await redis.zscore(KEYS.webhook_schedule, dead["delivery_id"]) is not None


async def test_task_page_errors_and_odd_data(redis, url):
    await redis.hset(KEYS.task("odd"), mapping={"status": "no-such-status", "progress": "abc"})
    await redis.xadd(KEYS.events, {"type": "accepted", "task_id": "odd", "payload": "{not json"})
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert error_of(await http.get("/ui/api/tasks/nope")) == (404, "task_id", "not_found")
        assert error_of(await http.get("/ui/api/tasks/-bad")) == (422, "task_id", "invalid")
        assert error_of(await http.get("/ui/api/tasks/odd")) == (404, "task_id", "not_found")
        task_id = await submit(http)
        await redis.xadd(KEYS.events, {"type": "started", "task_id": task_id, "payload": "[1, 2"})
        await redis.xadd(KEYS.events, {"task_id": task_id})
        for stream in (KEYS.events, KEYS.progress, KEYS.dlq, KEYS.webhook_dlq):  # bytes that are not text
            await redis.execute_command("XADD", stream, "*", b"task_id", task_id.encode(), b"payload", b"\xff")
        # charts of 30 minutes: the 60-minute figures are cached for the charts test
        for path in ("/ui/api/charts?minutes=30", "/ui/api/tasks", f"/ui/api/tasks?q={task_id[:4]}"):
            assert (await http.get(path)).status_code == 200, path
        detail = (await http.get(f"/ui/api/tasks/{task_id}")).json()
        assert [e["type"] for e in detail["timeline"]] == ["accepted"]
        assert detail["params"]["prompt"] == "a fox" and detail["attempts"] == []
        overview = await http.get("/ui/api/overview")
    assert overview.status_code == 200
    assert [t["task_id"] for t in overview.json()["tasks"]] == [task_id]
    specs = {s["name"]: s for s in overview.json()["task_specs"]}
    assert specs["demo"]["sizes"] == ["64*64", "96*64"] and specs["demo"]["accepts_image"]
    assert specs["i2v-A14B"]["needs_image"] and not specs["t2v-A14B"]["accepts_image"]


async def test_search_by_id_and_filter_by_state(redis, url):
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        ids = [await submit(http, prompt=f"task {i}") for i in range(3)]
        cancel = await http.delete(f"/tasks/{ids[1]}")
        assert cancel.json()["status"] == "cancelled"
        await redis.hset(KEYS.task("broken"), mapping={"status": "queued", "created_at": "yesterday"})
        await redis.xadd(KEYS.events, {"type": "accepted", "task_id": "broken", "payload": "{}"})

        async def search(**params) -> list[str]:
            response = await http.get("/ui/api/tasks", params=params)
            assert response.status_code == 200, response.text
            return [t["task_id"] for t in response.json()["tasks"]]

        assert await search(status="cancelled") == [ids[1]]
        assert sorted(await search(status="queued")) == sorted([ids[0], ids[2]])
        assert sorted(await search(status="active")) == sorted([ids[0], ids[2]])
        assert await search(q=ids[2][:10]) == [ids[2]]
        assert await search(q=ids[1], status="queued") == []
        assert sorted(await search()) == sorted(ids)
        assert len(await search(limit=2)) == 2
        assert error_of(await http.get("/ui/api/tasks?status=bogus")) == (422, "status", "invalid")
        assert error_of(await http.get("/ui/api/tasks?q=a*b")) == (422, "q", "invalid")
        assert error_of(await http.get("/ui/api/tasks?limit=0")) == (422, "limit", "invalid")
        assert error_of(await http.get("/ui/api/tasks?limit=x")) == (422, "limit", "invalid")
    assert await redis.hget(KEYS.task(ids[1]), "status") == "cancelled"


async def test_charts_count_per_minute_queue_depth_and_percentiles(redis, url):
    await redis.xadd(KEYS.events, {"type": "completed", "task_id": "x", "payload": "{not json"})
    await redis.xadd(KEYS.events, {"unrelated": "entry"})
    store = TaskStore(redis, KEYS)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        ids = [await submit(http) for _ in range(4)]
        # A generator claims two of them: the group's lag is now 2.
        await redis.xgroup_create(KEYS.jobs("demo"), GENERATOR_GROUP, id="0")
        await redis.xreadgroup(GENERATOR_GROUP, "gen-a", {KEYS.jobs("demo"): ">"}, count=2)
        await run_attempt(redis, ids[0], 1, "gen-a", 1)
        await run_attempt(redis, ids[1], 1, "gen-a", 1)
        await store.finish(Completed(task_id=ids[0], video_url="file:///v.mp4", duration_s=2.0), {})
        await store.finish(Failed(task_id=ids[1], error="boom"), {})
        await http.delete(f"/tasks/{ids[2]}")
        data = (await http.get("/ui/api/charts")).json()
        assert error_of(await http.get("/ui/api/charts?minutes=abc")) == (422, "minutes", "invalid")
        assert error_of(await http.get("/ui/api/charts?minutes=1")) == (422, "minutes", "invalid")

    counts = {kind: sum(series) for kind, series in data["counts"].items()}
    assert counts == {"accepted": 4, "completed": 1, "failed": 1, "cancelled": 1, "rejected": 0}
    assert data["minutes"] == 60 and all(len(s) == 60 for s in data["counts"].values())
    depth = data["queue_depth"]["demo"]
    assert depth[-1] == 2 and max(depth[:-2]) == 0  # before the accepts nothing waited
    assert data["run_time"]["overall"] == {"p50": 2.0, "p95": 2.0, "n": 1}
    assert data["queue_wait"]["overall"]["n"] == 2 and data["queue_wait"]["overall"]["p95"] >= 0
    assert data["queue_depth"]["t2v-A14B"] == [0] * 60


async def test_replay_and_purge_job_dead_letters(redis, url):
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        task_id, dlq_id = await dead_letter_t2v_job(redis, http)
        garbage = await redis.xadd(KEYS.dlq, {"type": "dead_letter", "payload": "{oops"})
        letters = (await http.get("/ui/api/overview")).json()["dead_letters"]
        assert (letters[0]["id"], letters[0]["task_id"], letters[0]["error"]) == (dlq_id, task_id, "model exploded")
        assert letters[1]["id"] == garbage and letters[1]["reason"] == "undecodable"

        replay = await http.post(f"/ui/api/dlq/{dlq_id}/replay")
        assert replay.status_code == 200, replay.text
        new_id = replay.json()["new_entry_id"]
        [(_, fields)] = await redis.xrange(KEYS.jobs("t2v-A14B"), min=new_id, max=new_id)
        assert fields["task_id"] == task_id and fields["_replay_of"] == dlq_id
        assert await redis.hget(KEYS.task(task_id), "status") == "queued"
        assert error_of(await http.post(f"/ui/api/dlq/{dlq_id}/replay")) == (404, "dlq_id", "not_found")
        assert error_of(await http.post("/ui/api/dlq/abc/replay")) == (422, "dlq_id", "invalid")
        assert error_of(await http.post(f"/ui/api/dlq/{garbage}/replay")) == (422, "dlq_id", "undecodable")

        purge = await http.post("/ui/api/dlq/purge", json={"ids": [garbage]})
        assert purge.json() == {"purged": 1}
        for _ in range(2):
            await dead_letter_t2v_job(redis, http)
        assert (await http.post("/ui/api/dlq/purge", json={"all": True})).json() == {"purged": 2}
        assert await redis.xlen(KEYS.dlq) == 0

        await redis.xadd(KEYS.webhook_dlq, {"type": "webhook_dead_letter", "payload": "nope"})
        assert (await http.get("/ui/api/overview")).json()["webhook_dead_letters"][0]["reason"] == "undecodable"
        assert (await http.post("/ui/api/webhooks/dlq/purge", json={"all": True})).json() == {"purged": 1}

        bad_bodies = [
            (b"not json", (400, None, "malformed")),
            (b"{}", (422, "ids", "invalid")),
            (b'{"ids": ["x"]}', (422, "ids", "invalid")),
            (b'{"ids": 5}', (422, "ids", "invalid")),
            (b'{"ids": ["1-0"], "all": true}', (422, "ids", "invalid")),
            (b'{"every": true}', (422, "ids", "invalid")),
        ]
        for body, expected in bad_bodies:
            response = await http.post("/ui/api/dlq/purge", content=body)
            assert error_of(response) == expected, body


async def test_replayed_job_runs_to_its_stream_while_generators_wait(redis, url):
    """The replayed entry keeps the job payload intact, so a generator decodes it as before."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        task_id, dlq_id = await dead_letter_t2v_job(redis, http)
        new_id = (await http.post(f"/ui/api/dlq/{dlq_id}/replay")).json()["new_entry_id"]
    with anyio.fail_after(5):
        reply = await redis.xreadgroup(GENERATOR_GROUP, "gen-x", {KEYS.jobs("t2v-A14B"): ">"}, count=10)
    [(_, rows)] = reply
    assert [entry_id for entry_id, _ in rows] == [new_id]
    assert '"task":"t2v-A14B"' in rows[0][1]["payload"] and task_id in rows[0][1]["payload"]
