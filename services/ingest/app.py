"""The ingest service: the stream door and the HTTP door in one process."""

from __future__ import annotations

import anyio
from redis.asyncio import Redis

from services import httpserver
from services.accept import Wait
from services.assets import open_assets
from services.consumer import StreamConsumer
from services.dashboard.app import Dashboard
from services.ingest.api import Api, build_app
from services.ingest.backpressure import LagMonitor
from services.ingest.door import Door
from services.ingest.expiry import expire_loop
from services.ingest.normalize import Normalizer
from services.ingest.settings import IngestSettings
from services.ingest.stream_door import StreamDoor
from services.ingest.videos.routes import VideosApi
from services.keys import INGEST_GROUP, Keys
from services.models_config import ModelsConfig
from services.naming import consumer_name
from services.tasks import TaskStore


class IngestService:
    def __init__(self, redis: Redis, settings: IngestSettings, models: ModelsConfig) -> None:
        keys = Keys(settings.prefix)
        wait = Wait(settings.redis_wait_replicas, settings.redis_wait_timeout_ms)
        self.tasks = TaskStore(redis, keys, task_ttl_s=settings.task_ttl_s, wait=wait)
        self.lag = LagMonitor(redis, keys, models.names)
        self.door = Door(self.tasks, Normalizer(models, settings), self.lag, settings)
        self.settings = settings
        stream_door = StreamDoor(self.door, settings.max_body_bytes)
        # Batches of up to 64 requests, a few in flight at once so reads overlap with accepts.
        consumer_settings = settings.consumer(
            concurrency=4 * settings.stream_concurrency, batch=settings.stream_concurrency
        )
        self.consumer = StreamConsumer(
            redis,
            keys,
            keys.requests,
            INGEST_GROUP,
            consumer_name("ingest"),
            None,
            consumer_settings,
            batch_handler=stream_door.handle_batch,
        )
        self.api = Api(redis, keys, self.door, settings.tokens(), settings.max_body_bytes, settings.lease_ms)
        dashboard = Dashboard(self.api, redis, keys, models, settings.storage, settings.lease_ms)
        videos = VideosApi(
            self.api,
            models,
            open_assets(settings.storage, settings.s3_endpoint_url),
            default_model=settings.videos_default_model,
            max_image_bytes=settings.max_image_bytes,
            retention_s=settings.task_ttl_s,
        )
        self.app = build_app(self.api, [*videos.routes(), *dashboard.routes()])
        self._server: httpserver.Server | None = None

    async def run(self, *, http: bool = True) -> None:
        """Until `stop()`: the stream consumer drains, uvicorn finishes open requests."""
        http_done = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.lag.run)
            tg.start_soon(expire_loop, self.tasks)
            if http:
                tg.start_soon(self.door.run)
                self._server = httpserver.server(self.app, self.settings.http_host, self.settings.http_port)
                tg.start_soon(httpserver.serve, self._server, http_done)
            else:
                http_done.set()
            await self.consumer.run()
            with anyio.move_on_after(10):
                await http_done.wait()
            tg.cancel_scope.cancel()

    def stop(self) -> None:
        self.consumer.stop()
        if self._server:
            self._server.should_exit = True
