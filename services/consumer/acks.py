"""Acks, batched: handlers that finish together are acked with one XACK."""

from __future__ import annotations

import anyio
import structlog
from prometheus_client import Counter
from redis.exceptions import RedisError

from services.consumer.entry import Entry
from services.consumer.group import GroupMember
from services.consumer.policy import backoff_delay

log = structlog.get_logger("wan22.consumer")


class Acker:
    def __init__(self, member: GroupMember, acked: Counter) -> None:
        self.member, self._acked = member, acked
        self._ids: list[str] = []
        self._stale_history: list[str] = []  # attempt-history keys of acked entries
        self._ready = anyio.Event()

    def ack(self, entry: Entry) -> None:
        """Only after the handler succeeded and its effects are stored."""
        self._ids.append(entry.id)
        if entry.history:  # the error history is no longer needed
            self._stale_history.append(self.member.keys.attempts(self.member.stream, entry.id))
        self._ready.set()

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
                log.warning("consumer.ack_failed", error=str(exc))
                await anyio.sleep(backoff_delay(failures, 0.1, 5.0))
                self._ready.set()

    async def flush(self) -> None:
        if not self._ids:
            return
        ids, self._ids = self._ids, []
        stale, self._stale_history = self._stale_history, []
        try:
            await self.member.ack(ids, stale)
        except BaseException:
            self._ids[:0], self._stale_history[:0] = ids, stale  # kept for the next flush
            raise
        self._acked.inc(len(ids))
