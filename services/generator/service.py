"""The generator service: one gang, one task type; one job denoising at a time through the reliable
consumer, while the one before it encodes and uploads."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services import gangs, httpserver
from services.consumer.priority import PriorityConsumer
from services.gangs import DOWN, READY
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
        # Stable across restarts of this generator (its pod), so a restart finds its old placement group.
        placement_name = keys.placement_group(served.name, settings.generator_id or self.name)
        self.gang = Gang(served, settings, settings.world_size or served.world_size, placement_name, self._gang_changed)
        self._heartbeat_s = max(0.5, settings.lease_ms / 3000)
        self._changed = anyio.Event()
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
        self.consumer.slots.pause()  # until the gang is ready
        self._starting = anyio.CancelScope()

    async def run(self) -> None:
        ops = (
            httpserver.server(
                httpserver.ops_app(lambda: self.gang.ready, lambda: self.gang.state),
                self.settings.metrics_host,
                self.settings.metrics_port,
            )
            if self.settings.metrics_port
            else None
        )
        async with anyio.create_task_group() as tg:
            if ops:
                tg.start_soon(httpserver.serve, ops)
            upkeep = await tg.start(self._upkeep)
            try:
                with self._starting:
                    await self.gang.start()  # ready before claiming: no job waits on a model load
                if self.gang.ready:
                    await self.consumer.run()
            finally:
                upkeep.cancel()  # no record renewed after it is deleted below
                with anyio.CancelScope(shield=True), anyio.move_on_after(10):
                    await self.gang.teardown("shutdown")
                    with contextlib.suppress(RedisError):
                        await self.redis.delete(self.keys.gang(self.name))
                if ops:
                    ops.should_exit = True
                tg.cancel_scope.cancel()

    def _gang_changed(self, gang: Gang) -> None:
        """Claim jobs only while the gang can run them; tell operators at once."""
        if gang.ready:
            self.consumer.slots.resume()
        else:
            self.consumer.slots.pause()
        self._changed.set()

    async def _register_gang(self) -> None:
        """The gang's state and members (rank → node:pid), for operators and `wan22 groups`;
        expires unless the heartbeat renews it, so a dead generator's gang disappears on its own."""
        key = self.keys.gang(self.name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping=dict[Any, Any](self._gang_fields()))
            pipe.expire(key, max(2, int(self._heartbeat_s * 3)))
            await pipe.execute()

    def _gang_fields(self) -> dict[str, str]:
        gang = self.gang
        return gangs.fields(
            task=self.served.name,
            state=gang.state,
            since=gang.since,
            world_size=gang.world_size,
            strategy=self.served.placement_strategy,
            placement_group=gang.placement_name,
            master=gang.master,
            members=gang.members,
        )

    async def _upkeep(self, *, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            task_status.started(scope)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat)
                tg.start_soon(self._keep_gang)

    async def _heartbeat(self) -> None:
        """Renew the gang's record, and write it at once when the gang changes state."""
        while True:
            with anyio.move_on_after(self._heartbeat_s):
                await self._changed.wait()
            self._changed = anyio.Event()
            with contextlib.suppress(RedisError):
                await self._register_gang()

    async def _keep_gang(self) -> None:
        """Health checks between jobs, and rebuilding a gang that is down: with no job claimed while
        it is not ready, nothing else would."""
        while True:
            await anyio.sleep(self._heartbeat_s)
            if self.gang.state not in (READY, DOWN) or self.consumer.stopping:
                continue  # the first start, or a job's rebuild, is under way
            try:
                await self.gang.check_health()
            except Exception as exc:  # a failed rebuild: the next round tries again
                log.warning("gang.rebuild_failed", error=f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._starting.cancel()
        self.consumer.stop()
