"""/v1/videos against a real ingest process and redis-server, no generator: what is checked and
answered at the door (create, retrieve, list, delete of queued videos, errors), through the
real `openai` client and plain httpx."""

from __future__ import annotations

import io

import httpx
import openai
import pytest
from PIL import Image

from services.contracts import job_decoder
from services.keys import Keys

KEYS = Keys()


@pytest.fixture(scope="module")
def url(start_ingest) -> str:
    return start_ingest()


@pytest.fixture
async def client(url: str):
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def png(width: int = 48, height: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


async def job_of(redis, task: str, task_id: str):
    for _, fields in await redis.xrange(KEYS.jobs(task)):
        if fields["task_id"] == task_id:
            return job_decoder.decode(fields["payload"])
    raise AssertionError(f"no job for {task_id}")


async def test_sdk_create_queues_a_task_with_every_extension_mapped(client, redis) -> None:
    video = await client.videos.create(
        model="demo",
        prompt="a red fox",
        size="96x64",
        seconds="0.5",
        extra_body={
            "negative_prompt": "grey",
            "seed": 11,
            "num_inference_steps": 3,
            "guidance_scale": 4.5,
            "flow_shift": 7,
            "priority": "high",
            "metadata": {"team": "a"},
        },
    )
    assert (video.object, video.status, video.progress, video.model) == ("video", "queued", 0, "demo")
    assert (video.size, video.prompt, video.seconds) == ("96x64", "a red fox", "0.5")
    assert video.expires_at > video.created_at
    job = job_decoder.decode((await redis.xrange(KEYS.jobs("demo", "high")))[0][1]["payload"])
    assert (job.task_id, job.width, job.height, job.frame_num, job.seed) == (video.id, 96, 64, 13, 11)
    assert (job.sample_steps, job.sample_shift, job.guide_scale) == (3, 7.0, (4.5, 4.5))
    assert (job.negative_prompt, job.metadata) == ("grey", {"team": "a"})


async def test_json_body_create_and_retrieve(url: str, redis) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        created = await http.post("/v1/videos", json={"model": "demo", "prompt": "a fox", "num_frames": 9})
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        got = await http.get(f"/v1/videos/{video_id}")
    assert got.status_code == 200
    assert got.json()["status"] == "queued" and got.json()["seconds"] == "0.333333"
    assert int(got.headers["openai-poll-after-ms"]) >= 500
    assert (await job_of(redis, "demo", video_id)).frame_num == 9


async def test_uploaded_input_reference_reaches_the_job_as_an_image(client, redis) -> None:
    video = await client.videos.create(
        model="i2v-A14B", prompt="the cat moves", input_reference=("cat.png", png(), "image/png")
    )
    job = await job_of(redis, "i2v-A14B", video.id)
    assert job.image and job.image.startswith("data:image/png;base64,")


async def test_an_image_model_without_input_reference_names_it(client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.videos.create(model="i2v-A14B", prompt="the cat moves")
    assert caught.value.body["param"] == "input_reference"


async def test_a_file_that_is_no_image_is_refused(client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.videos.create(model="demo", prompt="x", input_reference=("a.txt", b"hello", "text/plain"))
    assert caught.value.body["param"] == "input_reference"


async def test_bad_size_raises_bad_request_naming_size(client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.videos.create(model="demo", prompt="x", size="1280x720")
    error = caught.value.body
    assert (error["param"], error["type"]) == ("size", "invalid_request_error")
    assert "supported" in error["message"]


async def test_too_many_seconds_names_seconds(client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.videos.create(model="demo", prompt="x", seconds="12")
    assert caught.value.body["param"] == "seconds"


async def test_unknown_id_raises_not_found(client) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.videos.retrieve("no-such-video")
    assert caught.value.body["param"] == "video_id"


async def test_list_pages_newest_first_and_oldest_first(client, redis) -> None:
    ids = [(await client.videos.create(model="demo", prompt=f"fox {n}")).id for n in range(5)]
    first = await client.videos.list(limit=2)
    assert [v.id for v in first.data] == ids[::-1][:2] and first.has_more
    second = await client.videos.list(limit=2, after=first.data[-1].id)
    assert [v.id for v in second.data] == ids[::-1][2:4]
    oldest = await client.videos.list(limit=100, order="asc")
    assert [v.id for v in oldest.data] == ids and not oldest.has_more
    every = [v.id async for v in client.videos.list(limit=2)]  # the SDK's own paging
    assert every == ids[::-1]


async def test_list_parameters_are_checked(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        for query, param in [("limit=0", "limit"), ("limit=101", "limit"), ("order=up", "order"), ("after=x", "after")]:
            response = await http.get(f"/v1/videos?{query}")
            assert response.status_code == 400 and response.json()["error"]["param"] == param, query


async def test_delete_of_a_queued_video_cancels_it_and_unlists_it(client, url: str) -> None:
    video = await client.videos.create(model="demo", prompt="a fox")
    deleted = await client.videos.delete(video.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (video.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        await client.videos.retrieve(video.id)
    assert video.id not in [v.id for v in (await client.videos.list(limit=100)).data]
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get(f"/tasks/{video.id}")).json()["status"] == "cancelled"
    with pytest.raises(openai.NotFoundError):
        await client.videos.delete(video.id)


async def test_content_of_a_queued_video_is_409(url: str, client) -> None:
    video = await client.videos.create(model="demo", prompt="a fox")
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.get(f"/v1/videos/{video.id}/content")
        bad_variant = await http.get(f"/v1/videos/{video.id}/content?variant=gif")
    assert response.status_code == 409 and response.json()["error"]["code"] == "video_not_ready"
    assert bad_variant.status_code == 400 and bad_variant.json()["error"]["param"] == "variant"


async def test_idempotency_key_header_answers_the_same_video(url: str) -> None:
    body = {"model": "demo", "prompt": "a fox"}
    async with httpx.AsyncClient(base_url=url) as http:
        first = await http.post("/v1/videos", json=body, headers={"Idempotency-Key": "k-1"})
        again = await http.post("/v1/videos", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.json()["id"] == again.json()["id"]


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "malformed"),
        ({"content": b"[1]", "headers": {"content-type": "application/json"}}, 400, "malformed"),
        ({"content": b"x", "headers": {"content-type": "text/plain"}}, 415, "unsupported_media_type"),
        ({"json": {"model": "demo", "prompt": "x" * 70_000}}, 413, "too_large"),
        ({"data": {"model": "demo", "prompt": "x", "extra_body": "[1]"}}, 400, "invalid"),
    ],
)
async def test_malformed_bodies_get_the_openai_envelope(url: str, kwargs: dict, status: int, code: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/videos", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and "type" in error


async def test_tokens_guard_every_route_with_the_envelope(start_ingest) -> None:
    url = start_ingest(WAN22_API_TOKENS="tok")
    refused = openai.AsyncOpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        await refused.videos.list()
    allowed = openai.AsyncOpenAI(base_url=url + "/v1", api_key="tok", max_retries=0)
    video = await allowed.videos.create(model="demo", prompt="a fox")
    assert (await allowed.videos.retrieve(video.id)).id == video.id
    async with httpx.AsyncClient(base_url=url) as http:
        for method, path in [("GET", f"/v1/videos/{video.id}"), ("GET", f"/v1/videos/{video.id}/content"),
                             ("DELETE", f"/v1/videos/{video.id}"), ("POST", "/v1/videos")]:  # fmt: skip
            response = await http.request(method, path)
            assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"


async def test_openapi_document_describes_every_videos_route(url: str) -> None:
    async with httpx.AsyncClient(base_url=url) as http:
        spec = (await http.get("/openapi.json")).json()
    paths = {path: set(ops) for path, ops in spec["paths"].items() if path.startswith("/v1/videos")}
    assert paths == {
        "/v1/videos": {"get", "post"},
        "/v1/videos/{video_id}": {"get", "delete"},
        "/v1/videos/{video_id}/content": {"get"},
    }
    fields = set(spec["components"]["schemas"]["VideoCreate"]["properties"])
    assert {"prompt", "model", "size", "seconds", "input_reference", "guidance_scale_2", "flow_shift"} <= fields


async def test_loras_are_chosen_by_name_with_the_registry_defaults(client, url: str, redis) -> None:
    video = await client.videos.create(model="demo", prompt="a fox", extra_body={"loras": [{"name": "style"}]})
    assert [(lora.name, lora.scale, lora.expert) for lora in (await job_of(redis, "demo", video.id)).loras] == [
        ("style", 0.8, "both")
    ]
    scaled = await client.videos.create(
        model="demo", prompt="a fox", extra_body={"loras": [{"name": "style", "scale": 0.25}]}
    )
    assert (await job_of(redis, "demo", scaled.id)).loras[0].scale == 0.25
    async with httpx.AsyncClient(base_url=url) as http:
        generated = await http.post("/generate", json={"task": "demo", "prompt": "x", "loras": [{"name": "style"}]})
    assert generated.status_code == 202
    assert (await job_of(redis, "demo", generated.json()["task_id"])).loras[0].name == "style"


@pytest.mark.parametrize(
    "loras",
    [
        [{"name": "nope"}],  # not in the registry
        [{"path": "/etc/passwd"}],  # never a path
        [{"name": "style", "expert": "high_noise"}],  # demo has one expert
        [{"name": "style", "scale": 99}],
        [{"name": "style"}] * 5,
    ],
)
async def test_bad_lora_choices_name_loras(client, url: str, loras: list) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.videos.create(model="demo", prompt="x", extra_body={"loras": loras})
    assert caught.value.body["param"] == "loras", caught.value.body
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/generate", json={"task": "demo", "prompt": "x", "loras": loras})
    assert response.status_code == 422 and response.json()["field"] == "loras", response.text


async def test_models_are_discoverable_with_their_loras(client) -> None:
    models = {m.id: m for m in (await client.models.list()).data}
    assert {"demo", "t2v-A14B", "i2v-A14B", "ti2v-5B"} <= set(models)
    demo = models["demo"].model_dump()
    assert demo["loras"] == [
        {"name": "style", "expert": "both", "scale": 0.8},
        {"name": "broken", "expert": "both", "scale": 1.0},
    ]
    assert (demo["fps"], demo["sizes"]) == (24, ["64*64", "96*64"])
    assert (await client.models.retrieve("demo")).id == "demo"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("nope")
