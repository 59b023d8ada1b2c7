"""The loop behind every batched write: work queued while a flush runs goes out together in the
next one; a flush that fails keeps its work and is retried with backoff."""

from __future__ import annotations

import anyio
import structlog
from redis.exceptions import RedisError

from services.consumer.policy import backoff_delay

log = structlog.get_logger("wan22.flush")


class BatchFlusher:
    what = "batch"  # named in the log line when a flush fails

    def __init__(self) -> None:
        self._ready = anyio.Event()

    def _wake(self) -> None:
        self._ready.set()

    async def flush(self) -> None:
        """Write everything queued; on failure leave it queued and raise."""
        raise NotImplementedError

    async def run(self) -> None:
        failures = 0
        while True:
            await self._ready.wait()
            self._ready = anyio.Event()
            try:
                await self.flush()
                failures = 0
            except RedisError as exc:
                failures += 1
                log.warning("flush.failed", what=self.what, error=str(exc))
                await anyio.sleep(backoff_delay(failures, 0.05, 5.0))
                self._wake()
