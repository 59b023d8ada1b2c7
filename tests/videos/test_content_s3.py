"""/v1/videos content and delete with S3 storage: a real ingest reading from a real S3-speaking
endpoint (moto's server). The generator's side is written by the generator's own storage code
and the same TaskStore calls a generator makes."""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest

from services.assets import ASSETS, asset_key
from services.contracts import Completed
from services.generator.storage import S3Storage
from services.keys import Keys
from services.tasks import TaskStore
from tests.s3_server import S3_ENV, S3Server
from wan.video import decode_mp4, encode_mp4, poster_image, spritesheet_image

KEYS = Keys()
BUCKET, PREFIX = "videos", "wan22/out"


@pytest.fixture(scope="module")
def s3():
    server = S3Server().start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def url(start_ingest, s3: S3Server) -> str:
    return start_ingest(WAN22_STORAGE=f"s3://{BUCKET}/{PREFIX}", WAN22_S3_ENDPOINT_URL=s3.url, **S3_ENV)


async def completed_video(client: openai.AsyncOpenAI, redis, s3: S3Server) -> tuple[str, bytes]:
    """A video accepted through the API, its files stored and its task finished as a generator does."""
    video = await client.videos.create(model="demo", prompt="a fox", size="64x64")
    frames = np.random.default_rng(0).random((5, 64, 64, 3), dtype=np.float32)
    data = encode_mp4(frames, 24)
    storage = S3Storage(f"s3://{BUCKET}/{PREFIX}", endpoint_url=s3.url)
    files = {"video": data, "thumbnail": poster_image(frames), "spritesheet": spritesheet_image(frames)}
    urls = {name: await storage.put(asset_key(video.id, ASSETS[name].file), blob, ASSETS[name].media_type)
            for name, blob in files.items()}  # fmt: skip
    tasks = TaskStore(redis, KEYS)
    await tasks.claim(video.id, 1, "test-generator")
    event = Completed(task_id=video.id, video_url=urls["video"], poster_url=urls["thumbnail"], width=64, height=64,
                      frame_num=5, fps=24)  # fmt: skip
    assert await tasks.finish(event, {"video_url": urls["video"], "width": 64, "height": 64, "frame_num": 5, "fps": 24})
    return video.id, data


async def test_content_streams_from_s3_with_ranges_and_delete_removes_the_objects(url, s3, redis) -> None:
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0) as client:
        video_id, data = await completed_video(client, redis, s3)
        video = await client.videos.retrieve(video_id)
        assert (video.status, video.size, video.seconds) == ("completed", "64x64", "0.166667")
        downloaded = (await client.videos.download_content(video_id)).read()
        assert downloaded == data and decode_mp4(downloaded).shape == (5, 64, 64, 3)
        async with httpx.AsyncClient(base_url=url) as http:
            middle = await http.get(f"/v1/videos/{video_id}/content", headers={"Range": "bytes=10-19"})
            poster = await http.get(f"/v1/videos/{video_id}/content?variant=thumbnail")
        assert middle.status_code == 206 and middle.content == data[10:20]
        assert poster.headers["content-type"] == "image/jpeg" and poster.content[:3] == b"\xff\xd8\xff"
        listed = s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{video_id}/")
        stored = {o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]}
        assert stored == {"video.mp4", "poster.jpg", "spritesheet.jpg"}
        assert (await client.videos.delete(video_id)).deleted
        assert s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{video_id}/").get("KeyCount") == 0
        with pytest.raises(openai.NotFoundError):
            await client.videos.download_content(video_id)
