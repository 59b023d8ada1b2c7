"""The generator service: one gang, one task type; one job denoising at a time through the reliable
consumer, while the one before it encodes and uploads."""

from __future__ import annotations

import contextlib

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services import httpserver
from services.consumer.priority import PriorityConsumer
from services.generator.gang import Gang
from services.generator.images import ImageLoader
from services.generator.settings import GeneratorSettings
from services.generator.storage import open_storage
from services.generator.worker import JobRunner
from services.keys import GENERATOR_GROUP, Keys
from services.models_config import ServedTask
from services.naming import consumer_name
from services.tasks import TaskStore

log = structlog.get_logger("wan22.generator")


class GeneratorService:
    def __init__(self, redis: Redis, settings: GeneratorSettings, served: ServedTask) -> None:
        keys = Keys(settings.prefix)
        self.settings, self.served = settings, served
        self.redis, self.keys = redis, keys
        self.name = consumer_name(f"gen-{served.name}")
        self.gang = Gang(served, settings, settings.world_size or served.world_size, self._register_gang)
        self._heartbeat_s = max(0.5, settings.lease_ms / 3000)
        images = ImageLoader(
            input_root=settings.input_root,
            max_bytes=settings.max_image_bytes,
            allow_networks=settings.webhook_allow_networks,
            s3_endpoint_url=settings.s3_endpoint_url,
        )
        storage = open_storage(settings.storage, endpoint_url=settings.s3_endpoint_url, presign_s=settings.s3_presign_s)
        self.runner = JobRunner(
            redis, keys, TaskStore(redis, keys), self.gang, storage, images, self.name, served.max_attempts
        )
        consumer_settings = settings.consumer(
            concurrency=settings.jobs_in_flight,  # 2: uploads overlap the next job (worker.py)
            batch=1,
            grace_s=settings.grace_s,
            max_attempts=served.max_attempts,
            backoff_base_s=settings.backoff_base_s,
        )
        # One queue over the task's priority streams (services.consumer.priority for the rule).
        self.consumer = PriorityConsumer(
            redis,
            keys,
            keys.job_streams(served.name),
            GENERATOR_GROUP,
            self.name,
            self.runner.handle,
            consumer_settings,
            self.runner.hooks(),
        )
        self._starting = anyio.CancelScope()

    async def run(self) -> None:
        ops = (
            httpserver.server(
                httpserver.ops_app(lambda: self.gang.ready), self.settings.metrics_host, self.settings.metrics_port
            )
            if self.settings.metrics_port
            else None
        )
        async with anyio.create_task_group() as tg:
            if ops:
                tg.start_soon(httpserver.serve, ops)
            tg.start_soon(self._heartbeat)
            try:
                with self._starting:
                    await self.gang.start()  # ready before claiming: no job waits on a model load
                if self.gang.ready:
                    await self.consumer.run()
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await self.gang.teardown("shutdown")
                    with contextlib.suppress(RedisError):
                        await self.redis.delete(self.keys.gang(self.name))
                if ops:
                    ops.should_exit = True
                tg.cancel_scope.cancel()

    async def _register_gang(self, members: list[dict]) -> None:
        """Who is in this gang (rank → node:pid), for operators and `wan22 groups`; expires unless
        the heartbeat renews it, so a dead generator's gang disappears on its own."""
        key = self.keys.gang(self.name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={str(m["rank"]): f"{m['node']}:{m['pid']}" for m in members})
            pipe.expire(key, max(2, int(self._heartbeat_s * 3)))
            await pipe.execute()

    async def _heartbeat(self) -> None:
        while True:
            await anyio.sleep(self._heartbeat_s)
            if not self.gang.ready:
                continue
            try:
                await self.gang.check_health()
            except Exception as exc:  # a failed rebuild: the next job tries again
                log.warning("gang.rebuild_failed", error=f"{type(exc).__name__}: {exc}")
                continue
            with contextlib.suppress(RedisError):
                await self._register_gang(self.gang.members)

    def stop(self) -> None:
        self._starting.cancel()
        self.consumer.stop()
