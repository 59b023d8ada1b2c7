"""Acks, batched: handlers that finish together are acked with one XACK."""

from __future__ import annotations

from prometheus_client import Counter

from services.consumer.entry import Entry
from services.consumer.flusher import BatchFlusher
from services.consumer.group import GroupMember


class Acker(BatchFlusher):
    what = "ack"

    def __init__(self, member: GroupMember, acked: Counter) -> None:
        super().__init__()
        self.member, self._acked = member, acked
        self._ids: list[str] = []
        self._writing: list[str] = []  # the ids of the XACK in flight
        self._stale_history: list[str] = []  # attempt-history keys of acked entries

    def held(self) -> list[str]:
        """Entries finished but not acked yet: still pending, so their lease must be kept."""
        return self._ids + self._writing

    def ack(self, entry: Entry) -> None:
        """Only after the handler succeeded and its effects are stored."""
        self._ids.append(entry.id)
        if entry.history:  # the error history is no longer needed
            self._stale_history.append(self.member.keys.attempts(self.member.stream, entry.id))
        self._wake()

    async def _write(self) -> None:
        if not self._ids:
            return
        ids, self._ids = self._ids, []
        stale, self._stale_history = self._stale_history, []
        self._writing = ids
        try:
            await self.member.ack(ids, stale)
        except BaseException:
            self._ids[:0], self._stale_history[:0] = ids, stale  # kept for the next flush
            raise
        finally:
            self._writing = []
        self._acked.inc(len(ids))
