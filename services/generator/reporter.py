"""Rank 0's link to Redis during a job: progress every step, `started` at the first step, and the
cancel flag. A background thread does the Redis work, so the denoising loop never waits on a
round trip: a step only queues its progress and reads a flag the thread keeps current. Progress
is best-effort: a Redis hiccup must not fail the job."""

from __future__ import annotations

import base64
import queue
import threading
import time
from typing import Any

import redis as redis_sync
import structlog

from services.contracts import Job, Progress, Started, encode, event_entry, now, state_to_hash
from services.keys import Keys

log = structlog.get_logger("wan22.rank")

CANCEL_POLL_S = 0.01  # an EXISTS every 10 ms per running job: cheap, and cancel lands within a step
PREVIEW_TTL_S = 3600  # a preview outlives its job a while: the finished video replaces it


class StepReporter:
    def __init__(
        self, redis: redis_sync.Redis, keys: Keys, job: Job, attempt: int, worker: str, progress_maxlen: int
    ) -> None:
        self.redis, self.keys, self.job, self.attempt, self.worker = redis, keys, job, attempt, worker
        self.progress_maxlen = progress_maxlen  # 0: progress entries off (started still goes out)
        self.steps = 0
        self._steps: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="step-reporter", daemon=True)

    def __enter__(self) -> StepReporter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)  # flushes what is queued, so progress precedes the result

    def on_step(self, info: Any) -> None:
        self.steps = info.step
        self._steps.put((info, now()))  # stamped when the step ended, not when it is published

    def should_cancel(self) -> bool:
        return self._cancel.is_set()

    def _loop(self) -> None:
        next_poll = 0.0
        while True:
            batch = self._drain()
            if batch:
                self._publish(batch)
            if time.monotonic() >= next_poll:
                self._poll_cancel()
                next_poll = time.monotonic() + CANCEL_POLL_S
            if self._done.is_set() and self._steps.empty():
                return

    def _drain(self) -> list[Any]:
        try:
            batch = [self._steps.get(timeout=CANCEL_POLL_S)]
        except queue.Empty:
            return []
        while not self._steps.empty():
            batch.append(self._steps.get_nowait())
        return batch

    def _poll_cancel(self) -> None:
        try:
            if self.redis.exists(self.keys.cancel(self.job.task_id)):
                self._cancel.set()
        except redis_sync.RedisError:
            pass  # unknown is "not cancelled"; the next poll asks again

    def _publish(self, batch: list[Any]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for info, ended_at in batch:
                if self.progress_maxlen:
                    self._progress(pipe, info, ended_at)
                if info.step == 1:
                    started = Started(task_id=self.job.task_id, attempt=self.attempt, worker=self.worker)
                    pipe.xadd(self.keys.events, event_entry(started))
            pipe.execute()
        except redis_sync.RedisError as exc:
            log.warning("progress.publish_failed", task_id=self.job.task_id, error=str(exc))

    def _progress(self, pipe: Any, info: Any, ended_at: float) -> None:
        progress = Progress(
            task_id=self.job.task_id,
            step=info.step,
            total=info.total,
            percent=round(100.0 * info.step / info.total, 2),
            expert=info.expert,
            elapsed_s=round(info.elapsed_s, 4),
            attempt=self.attempt,
            ts=ended_at,
            preview_step=info.step if info.preview else 0,
        )
        if info.preview:  # before the entry that announces it
            pipe.set(self.keys.preview(self.job.task_id), base64.b64encode(info.preview), ex=PREVIEW_TTL_S)
        entry = {"type": "progress", "task_id": self.job.task_id, "payload": encode(progress)}
        pipe.xadd(self.keys.progress, entry, maxlen=self.progress_maxlen, approximate=True)
        # Only the fields a step changes: the rest of the hash belongs to ingest and the driver.
        fields = {
            "status": "running",
            "progress": progress.percent,
            "step": info.step,
            "total": info.total,
            "expert": info.expert,
            "updated_at": progress.ts,
        }
        pipe.hset(self.keys.task(self.job.task_id), mapping=state_to_hash(fields))
