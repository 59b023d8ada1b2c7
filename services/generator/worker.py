"""The job handler: claim the task, run it on the gang, store the video, finish exactly once.

Order on success: upload mp4, poster and spritesheet, set the terminal state with the URLs (only if not yet
terminal) together with the `completed` event, and only then let the consumer ack. A job whose
task is already terminal is only acked, so a redelivered job never yields a second event.

Pipelined: a job holds the gang (its turn) only while it is claimed and denoised. Its encoding
(on rank 0) and upload run after its turn, while the next job, in another handler of the
consumer (`jobs_in_flight`), claims the gang and denoises; each job is still acked only after its
own upload and terminal state.
"""

from __future__ import annotations

import time

import anyio
import structlog
from redis.asyncio import Redis

from services import metrics
from services.assets import ASSETS, asset_key
from services.consumer import Entry, Hooks
from services.contracts import Cancelled, Completed, ErrorRecord, Failed, Job, Retrying, is_task_id, job_decoder
from services.generator.gang import Gang, JobCancelled
from services.generator.images import ImageLoader
from services.generator.storage import Storage
from services.generator.utilization import GangUtilization
from services.keys import Keys
from services.queueinfo import record_run
from services.tasks import TaskStore

log = structlog.get_logger("wan22.generator")


class JobRunner:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        tasks: TaskStore,
        gang: Gang,
        storage: Storage,
        images: ImageLoader,
        worker: str,
        default_max_attempts: int,
    ) -> None:
        self.redis, self.keys, self.tasks, self.gang = redis, keys, tasks, gang
        self.storage, self.images, self.worker = storage, images, worker
        self.default_max_attempts = default_max_attempts
        self._turn = anyio.Lock()  # claim and denoise one job at a time; uploads overlap the next job
        self.utilization = GangUtilization()

    def hooks(self) -> Hooks:
        return Hooks(on_retry=self.on_retry, on_dead=self.on_dead, max_attempts=self.max_attempts)

    async def handle(self, entry: Entry) -> None:
        job = entry.decode(job_decoder)
        structlog.contextvars.bind_contextvars(task=job.task, attempt=entry.attempt)
        async with self._turn:
            status = await self.tasks.claim(job.task_id, entry.attempt, self.worker)
            if status != "running":
                log.info("job.skipped", status=status)  # already terminal: ack only
                return
            if await self.tasks.cancel_requested(job.task_id):
                await self._cancelled(job, "cancelled before it started")
                return
            image = await self.images.load(job.image) if job.image else None
            started = time.perf_counter()
            try:
                denoised = await self.gang.denoise(job, image, entry.attempt, self.worker)
            except JobCancelled as exc:
                self.utilization.interrupted()
                await self._cancelled(job, f"cancelled at step {exc.step}")
                return
            except anyio.get_cancelled_exc_class():
                # Shutdown past the grace period: stop the ranks, leave the job pending for another gang.
                self.utilization.interrupted()
                with anyio.CancelScope(shield=True):
                    await self.gang.teardown("shutdown while running")
                raise
            except Exception:
                self.utilization.interrupted()
                raise
            self.utilization.record(job.task, entry.id, denoised)
        result = await self.gang.collect(denoised)  # the next job may be denoising already
        if await self.tasks.cancel_requested(job.task_id):
            # Answered `cancelling` after the last step (during the decode, which takes seconds at
            # 720p): the user asked for no video, so none is stored.
            await self._cancelled(job, "cancelled after its last step, before upload")
            return
        await self._completed(job, entry, result, time.perf_counter() - started)

    async def _completed(self, job: Job, entry: Entry, result: dict, duration_s: float) -> None:
        urls: dict[str, str] = {}

        async def put(name: str, key: str, content_type: str) -> None:
            urls[name] = await self.storage.put(asset_key(job.task_id, key), result[name], content_type)

        try:
            async with anyio.create_task_group() as uploads:  # all at once
                for name, variant in (("video", "video"), ("poster", "thumbnail"), ("spritesheet", "spritesheet")):
                    if name in result:
                        uploads.start_soon(put, name, ASSETS[variant].file, ASSETS[variant].media_type)
        except ExceptionGroup as group:  # the storage's own error, as the retry record shows it
            raise group.exceptions[0] from None
        video_url, poster_url = urls["video"], urls["poster"]
        video = {key: int(result.get(key, 0)) for key in ("width", "height", "frame_num", "fps")}
        event = Completed(
            task_id=job.task_id,
            video_url=video_url,
            poster_url=poster_url,
            duration_s=round(duration_s, 3),
            attempt=entry.attempt,
            **video,
        )
        fields = {"video_url": video_url, "poster_url": poster_url, "progress": 100.0, "error": ""} | video
        first = await self.tasks.finish(event, fields)
        if first:
            await record_run(self.redis, self.keys, job.task, duration_s)
        metrics.JOBS.labels(job.task, "completed").inc()
        metrics.JOB_SECONDS.labels(job.task).observe(duration_s)
        if result.get("steps"):
            metrics.STEP_SECONDS.labels(job.task).observe(result["denoise_s"] / result["steps"])
        log.info(
            "job.completed",
            video_url=video_url,
            duration_s=round(duration_s, 3),
            first=first,
            frames=video["frame_num"],
            size=f"{video['width']}*{video['height']}",
            denoise_s=round(result.get("denoise_s", 0.0), 3),
            encode_s=round(result.get("encode_s", 0.0), 3),
            gang_started_at=result.get("gang_started_at"),
            gang_ended_at=result.get("gang_ended_at"),
        )

    async def _cancelled(self, job: Job, reason: str) -> None:
        await self.tasks.finish(Cancelled(task_id=job.task_id, reason=reason), {"error": reason})
        metrics.JOBS.labels(job.task, "cancelled").inc()
        log.info("job.cancelled", reason=reason)

    # ---- consumer hooks --------------------------------------------------------------------

    def max_attempts(self, entry: Entry) -> int:
        try:
            return entry.decode(job_decoder).max_attempts
        except Exception:
            return self.default_max_attempts

    async def on_retry(self, entry: Entry, record: ErrorRecord, delay: float) -> None:
        task_id = entry.task_id
        if await self.tasks.cancel_requested(task_id):
            return  # the next attempt sees the flag and cancels
        limit = self.max_attempts(entry)
        event = Retrying(
            task_id=task_id, attempt=record.attempt, max_attempts=limit, error=record.error, delay_s=round(delay, 3)
        )
        await self.tasks.retrying(event)
        log.warning("job.retrying", error=record.error, delay_s=round(delay, 2))

    async def _is_task(self, task_id: str) -> bool:
        return is_task_id(task_id) and bool(await self.redis.exists(self.keys.task(task_id)))

    async def on_dead(self, entry: Entry, history: list[ErrorRecord], reason: str) -> None:
        error = history[-1].error if history else reason
        attempts = sum(1 for r in history if r.kind != "handed_back")
        event = Failed(task_id=entry.task_id, error=error, attempts=attempts, error_type=reason)
        if await self._is_task(entry.task_id):  # a malformed entry's task_id may name no task
            await self.tasks.finish(event, {"error": error, "attempts": attempts})
        task = self.keys.task_of(entry.stream)
        metrics.JOBS.labels(task, "failed").inc()
        log.error("job.failed", error=error, attempts=attempts, reason=reason)
