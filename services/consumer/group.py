"""This consumer's side of its group, as Redis commands: acks, lease extension, hand-back,
reclaiming entries of dead consumers, forgetting consumers that are gone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis

from services.consumer import wire
from services.consumer.entry import Entry
from services.consumer.history import load_history, record_error
from services.consumer.policy import ConsumerSettings
from services.contracts import ErrorRecord, now
from services.keys import Keys

log = structlog.get_logger("wan22.consumer")


@dataclass(frozen=True)
class GroupMember:
    redis: Redis
    keys: Keys
    stream: str
    group: str
    name: str
    settings: ConsumerSettings

    async def ack(self, ids: list[str], stale_history: list[str]) -> None:
        if not stale_history:
            await self.redis.xack(self.stream, self.group, *ids)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.stream, self.group, *ids)
            pipe.delete(*stale_history)
            await pipe.execute()

    async def extend(self, ids: list[str]) -> set[str]:
        """Reset the idle time of entries in progress (XCLAIM JUSTID: no delivery counted);
        returns the ones another consumer has taken meanwhile."""
        kept = await self.redis.xclaim(self.stream, self.group, self.name, 0, list[Any](ids), justid=True)
        return set(ids) - set(kept)

    async def hand_back(self) -> int:
        """Make everything still pending under this consumer claimable at once (idle = lease)
        instead of waiting out the lease; it stays pending, never acked."""
        rows = await self.redis.xpending_range(
            self.stream, self.group, min="-", max="+", count=10_000, consumername=self.name
        )
        ids: list[Any] = [row["message_id"] for row in rows]
        if ids:
            await self.redis.xclaim(
                self.stream, self.group, self.name, 0, ids, idle=self.settings.lease_ms + 1, justid=True
            )
        return len(ids)

    async def autoclaim(self, cursor: str, count: int) -> tuple[str, list[Entry]]:
        """Entries idle past the lease, now ours, with their delivery counts and error history."""
        cursor, claimed = await wire.xautoclaim(
            self.redis, self.stream, self.group, self.name, self.settings.lease_ms, cursor, count
        )
        return cursor, await self._with_history(claimed)

    async def _with_history(self, claimed: list[Entry]) -> list[Entry]:
        """A delivery that left no error behind was lost with its consumer: it counts as a failed
        attempt, so an entry that kills every consumer is dead-lettered instead of looping."""
        if not claimed:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in claimed:
                pipe.xpending_range(self.stream, self.group, min=entry.id, max=entry.id, count=1)
            pending = await pipe.execute()
        entries = []
        for entry, info in zip(claimed, pending, strict=True):
            entry.deliveries = int(info[0]["times_delivered"]) if info else 1
            entry.history = await load_history(self.redis, self.keys.attempts(self.stream, entry.id))
            for _ in range(entry.deliveries - 1 - len(entry.history)):
                await self.record(
                    entry,
                    ErrorRecord(
                        at=now(),
                        error="consumer stopped before finishing (lease expired)",
                        attempt=entry.attempt,
                        kind="lost",
                    ),
                )
            entries.append(entry)
        return entries

    async def record(self, entry: Entry, record: ErrorRecord) -> None:
        entry.history.append(record)
        await record_error(self.redis, self.keys.attempts(self.stream, entry.id), record, self.settings.history_ttl_s)

    async def forget_idle_consumers(self) -> None:
        """Remove consumers of dead processes once they hold nothing (keeps XINFO readable)."""
        limit_ms = self.settings.idle_consumer_s * 1000
        for consumer in await self.redis.xinfo_consumers(self.stream, self.group):
            if consumer["name"] != self.name and not consumer["pending"] and consumer["idle"] > limit_ms:
                await self.redis.xgroup_delconsumer(self.stream, self.group, consumer["name"])
