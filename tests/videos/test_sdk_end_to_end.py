"""/v1/videos end to end: the real `openai` client against a real ingest and a real generator
(a gang of 2 Ray ranks with a tiny random-weight ti2v model); videos decoded with PyAV."""

from __future__ import annotations

import io
from pathlib import Path

import anyio
import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from services.contracts import progress_decoder
from services.keys import Keys
from wan.video import decode_mp4

KEYS = Keys()
WAIT_S = 300  # generous: a loaded 2-core machine runs the tiny model slowly


def registry(tiny_ckpt: Path, root: Path) -> str:
    """Previews every 2 steps, and the generator's LoRA registry: `style`, a real adapter for the
    tiny transformer, and `broken`, a torn file (ingest knows both names, as it must)."""
    from diffusers import WanTransformer3DModel

    from tests.wan.lora_support import write_diffusers_lora

    transformer = WanTransformer3DModel.from_pretrained(tiny_ckpt / "transformer")
    style = write_diffusers_lora(root / "style", transformer, seed=21)
    (root / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{torn")
    return f"""previews = true
preview_every = 2
[[tasks.demo.lora_registry.adapters]]
name = "style"
path = "{style}"
[tasks.demo.lora_registry]
dir = "{root}"
"""


@pytest.fixture(scope="module")
def stack(start_generator, start_ingest, tiny_ckpt: Path, tmp_path_factory) -> tuple[str, Path]:
    generator = start_generator(models_extra=registry(tiny_ckpt, tmp_path_factory.mktemp("loras")))
    return start_ingest(WAN22_STORAGE=str(generator.storage)), generator.storage


@pytest.fixture
async def client(stack):
    async with openai.AsyncOpenAI(base_url=stack[0] + "/v1", api_key="unused", max_retries=0) as sdk:
        yield sdk


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 160, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_create_and_poll_then_download_every_variant(client, stack, redis) -> None:
    with anyio.fail_after(WAIT_S):
        video = await client.videos.create_and_poll(
            model="demo",
            prompt="a red fox in the snow",
            size="64x64",
            extra_body={"num_frames": 5, "seed": 3, "negative_prompt": "grey"},
            poll_interval_ms=200,
        )
    assert (video.status, video.progress, video.size, video.seconds) == ("completed", 100, "64x64", "0.166667")
    assert video.completed_at >= video.created_at and video.error is None
    content = await client.videos.download_content(video.id)
    frames = decode_mp4(content.read())
    assert frames.shape == (5, 64, 64, 3)
    thumbnail = Image.open(io.BytesIO((await client.videos.download_content(video.id, variant="thumbnail")).read()))
    assert (thumbnail.format, thumbnail.size) == ("JPEG", (64, 64))
    sheet = Image.open(io.BytesIO((await client.videos.download_content(video.id, variant="spritesheet")).read()))
    assert sheet.format == "JPEG" and sheet.size[0] >= 64


async def test_json_body_create_polled_with_httpx_and_read_in_ranges(stack, redis) -> None:
    url, _ = stack
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        created = await http.post("/v1/videos", json={"model": "demo", "prompt": "a fox", "size": "64x64",
                                                      "seconds": 0.17, "seed": 5})  # fmt: skip
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        with anyio.fail_after(WAIT_S):
            while (video := (await http.get(f"/v1/videos/{video_id}")).json())["status"] != "completed":
                assert video["status"] in ("queued", "in_progress"), video
                await anyio.sleep(0.2)
        whole = await http.get(f"/v1/videos/{video_id}/content")
        head = await http.get(f"/v1/videos/{video_id}/content", headers={"Range": "bytes=0-99"})
        tail = await http.get(f"/v1/videos/{video_id}/content", headers={"Range": "bytes=-50"})
        beyond = await http.get(f"/v1/videos/{video_id}/content", headers={"Range": f"bytes={len(whole.content)}-"})
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    assert decode_mp4(whole.content).shape == (5, 64, 64, 3)
    assert head.status_code == 206 and head.content == whole.content[:100]
    assert head.headers["content-range"] == f"bytes 0-99/{len(whole.content)}"
    assert tail.status_code == 206 and tail.content == whole.content[-50:]
    assert beyond.status_code == 416


async def test_ti2v_with_an_uploaded_image(client, tmp_path: Path, redis) -> None:
    image = tmp_path / "field.png"
    image.write_bytes(png(64, 64))
    with anyio.fail_after(WAIT_S), image.open("rb") as upload:
        video = await client.videos.create_and_poll(
            model="demo", prompt="grass in the wind", input_reference=upload, extra_body={"num_frames": 5},
            poll_interval_ms=200,
        )  # fmt: skip
    assert video.status == "completed", video.error
    assert decode_mp4((await client.videos.download_content(video.id)).read()).shape == (5, 64, 64, 3)


async def test_delete_mid_run_stops_the_job_at_the_next_step_and_removes_its_files(client, stack, redis) -> None:
    url, storage = stack
    video = await client.videos.create(
        model="demo", prompt="a long fox", size="64x64", extra_body={"num_frames": 5, "num_inference_steps": 100}
    )
    with anyio.fail_after(WAIT_S):
        while (await client.videos.retrieve(video.id)).progress < 2:
            await anyio.sleep(0.05)
    deleted = await client.videos.delete(video.id)
    assert deleted.deleted
    async with httpx.AsyncClient(base_url=url) as http:
        with anyio.fail_after(WAIT_S):
            while (state := (await http.get(f"/tasks/{video.id}")).json())["status"] != "cancelled":
                await anyio.sleep(0.1)
    steps = [progress_decoder.decode(f["payload"]).step for _, f in await redis.xrange(KEYS.progress)
             if f.get("task_id") == video.id]  # fmt: skip
    assert max(steps) < 100 and state["step"] < 100, state
    assert not (storage / video.id / "video.mp4").exists()
    with pytest.raises(openai.NotFoundError):
        await client.videos.retrieve(video.id)


async def frames_of(client: openai.AsyncOpenAI, **extra) -> np.ndarray:
    with anyio.fail_after(WAIT_S):
        video = await client.videos.create_and_poll(
            model="demo", prompt="a lit street", size="64x64", extra_body={"num_frames": 5, "seed": 9} | extra,
            poll_interval_ms=200,
        )  # fmt: skip
    assert video.status == "completed", video.error
    return decode_mp4((await client.videos.download_content(video.id)).read())


async def test_a_lora_per_request_changes_the_video_and_the_next_job_is_the_base_again(client, redis) -> None:
    base = await frames_of(client)
    styled = await frames_of(client, loras=[{"name": "style", "scale": 1.5}])
    assert np.abs(styled.astype(int) - base.astype(int)).max() > 20  # the adapter reached the gang
    # and left it: the base weights exactly, and the same frames make the same mp4 (wan.video.x264_params)
    assert np.array_equal(await frames_of(client), base)


async def test_a_broken_adapter_fails_its_job_clearly_and_the_gang_serves_the_next(client, redis) -> None:
    with anyio.fail_after(WAIT_S):
        video = await client.videos.create_and_poll(
            model="demo", prompt="x", size="64x64", poll_interval_ms=200,
            extra_body={"num_frames": 5, "loras": [{"name": "broken"}], "max_attempts": 1},
        )  # fmt: skip
    assert video.status == "failed" and video.error is not None
    assert "broken.safetensors" in video.error.message and "cannot read it" in video.error.message
    assert (await frames_of(client)).shape == (5, 64, 64, 3)


async def test_thumbnail_while_running_is_the_latest_preview(client, redis) -> None:
    video = await client.videos.create(
        model="demo", prompt="a slow fox", size="64x64", extra_body={"num_frames": 5, "num_inference_steps": 100}
    )
    with anyio.fail_after(WAIT_S):
        while not any(progress_decoder.decode(f["payload"]).preview_step for _, f in await redis.xrange(KEYS.progress)
                      if f.get("task_id") == video.id):  # fmt: skip
            await anyio.sleep(0.05)
    thumbnail = (await client.videos.download_content(video.id, variant="thumbnail")).read()
    assert (await client.videos.retrieve(video.id)).status == "in_progress"
    image = Image.open(io.BytesIO(thumbnail))
    assert image.format == "JPEG" and image.size == (64, 64)
    steps = [progress_decoder.decode(f["payload"]) for _, f in await redis.xrange(KEYS.progress)
             if f.get("task_id") == video.id]  # fmt: skip
    assert all(p.preview_step == p.step for p in steps if p.preview_step) and all(
        p.preview_step == 0 for p in steps if p.step % 2
    )
    await client.videos.delete(video.id)
    with pytest.raises(openai.NotFoundError):
        await client.videos.download_content(video.id, variant="thumbnail")
