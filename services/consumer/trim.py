"""Trimming that never drops an entry a group has not delivered or not acked.

The safe point of a group is the smaller of its oldest pending id and its last-delivered id;
everything below the smallest safe point over all groups is acked by every group. `XTRIM MINID`
removes only entries below it, so a group's lag (entries_added - entries_read) stays computable:
no entry after a group's last-delivered id is ever deleted, which KEDA's lag mode relies on.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis
from redis.exceptions import ResponseError


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _min_id(ids: list[str]) -> str | None:
    return min(ids, key=_id_tuple) if ids else None


async def safe_trim_point(redis: Redis, stream: str) -> str | None:
    """The id below which every group has delivered and acked everything; None if no group."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None  # stream does not exist
    if not groups:
        return None
    points: list[str] = []
    for group in groups:
        points.append(str(group["last-delivered-id"]))
        if int(group["pending"]):
            summary = await redis.xpending(stream, group["name"])
            if summary["min"] is not None:  # acked since XINFO GROUPS read it
                points.append(str(summary["min"]))
    return _min_id(points)


async def trim_stream(redis: Redis, stream: str, retain_s: float) -> int:
    """Trim acked entries older than `retain_s` (entry ids are millisecond timestamps, so the
    age cut costs nothing to find); returns entries removed."""
    safe = await safe_trim_point(redis, stream)
    if safe is None:
        return 0
    cutoff = f"{max(0, int((time.time() - retain_s) * 1000))}-0"
    keep_from = _min_id([safe, cutoff]) or safe
    return int(await redis.xtrim(stream, minid=keep_from, approximate=False))
