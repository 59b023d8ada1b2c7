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
        self._one_at_a_time = anyio.Lock()

    def _wake(self) -> None:
        self._ready.set()

    async def flush(self) -> None:
        """Write everything queued; on failure leave it queued and raise. One flush at a time: a
        final flush at shutdown waits for the one in flight rather than find nothing queued and
        let the in-flight write be cancelled with the loop."""
        async with self._one_at_a_time:
            await self._write()

    async def _write(self) -> None:
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
