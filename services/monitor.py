"""Consumer-group monitoring: every stream and group with length, lag, pending, consumers, the
oldest pending age and dead-letter counts, every generator's gang, plus the conditions operators
must act on."""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services import gangs
from services.consumer import wire
from services.keys import Keys


async def streams_of(redis: Redis, keys: Keys, tasks: list[str]) -> list[str]:
    """Known streams (every priority of every task) plus every job stream that exists (tasks added
    by other deployments too)."""
    found = {key async for key in redis.scan_iter(match=keys.jobs_pattern, _type="stream")}
    ordered = [
        keys.requests,
        *(stream for task in tasks for stream in keys.job_streams(task)),
        *sorted(found),
        keys.events,
        keys.progress,
        keys.dlq,
        keys.webhook_dlq,
    ]
    return list(dict.fromkeys(ordered))


async def snapshot(redis: Redis, keys: Keys, tasks: list[str], lease_ms: int) -> dict[str, Any]:
    streams = []
    for stream in await streams_of(redis, keys, tasks):
        info = await _stream(redis, stream, lease_ms)
        if info is not None:
            streams.append(info)
    flags = [flag for s in streams for g in s["groups"] for flag in g["flags"]]
    dead = {"jobs_and_events": await _xlen(redis, keys.dlq), "webhooks": await _xlen(redis, keys.webhook_dlq)}
    live = await gangs.read_all(redis, keys)
    flags += gangs.flags(live)
    return {"at": time.time(), "streams": streams, "gangs": live, "dead_letters": dead, "flags": flags}


async def _xlen(redis: Redis, key: str) -> int:
    return int(await redis.xlen(key))


async def _stream(redis: Redis, stream: str, lease_ms: int) -> dict[str, Any] | None:
    try:
        length, last_id = await wire.stream_length_and_last_id(redis, stream)
    except ResponseError:
        return None  # not created yet
    groups = [await _group(redis, stream, g, lease_ms) for g in await redis.xinfo_groups(stream)]
    return {"stream": stream, "length": length, "last_id": last_id, "groups": groups}


async def _group(redis: Redis, stream: str, group: dict[str, Any], lease_ms: int) -> dict[str, Any]:
    name = group["name"]
    consumers = [
        {
            "name": c["name"],
            "pending": int(c["pending"]),
            "idle_ms": int(c["idle"]),
            "inactive_ms": int(c.get("inactive", c["idle"])),
        }
        for c in await redis.xinfo_consumers(stream, name)
    ]
    oldest_ms = 0
    if int(group["pending"]):
        rows = await redis.xpending_range(stream, name, min="-", max="+", count=1)
        oldest_ms = int(rows[0]["time_since_delivered"]) if rows else 0  # may be acked since XINFO
    lag = group.get("lag")
    summary = {
        "group": name,
        "lag": None if lag is None else int(lag),
        "pending": int(group["pending"]),
        "last_delivered_id": group["last-delivered-id"],
        "entries_read": group.get("entries-read"),
        "consumers": consumers,
        "oldest_pending_ms": oldest_ms,
    }
    summary["flags"] = _flags(stream, summary, lease_ms)
    return summary


def _flags(stream: str, group: dict[str, Any], lease_ms: int) -> list[str]:
    where = f"{stream} / {group['group']}"
    flags = []
    if group["lag"] is None:
        flags.append(f"{where}: lag unknown to Redis (entries deleted after the last delivery); KEDA reads 0")
    for consumer in group["consumers"]:
        if consumer["pending"] and consumer["idle_ms"] > lease_ms:
            flags.append(
                f"{where}: consumer {consumer['name']} idle {consumer['idle_ms'] / 1000:.0f} s "
                f"with {consumer['pending']} pending (past the lease: will be reclaimed)"
            )
    live = [c for c in group["consumers"] if c["idle_ms"] <= lease_ms]
    if group["pending"] and not live:
        flags.append(f"{where}: {group['pending']} pending and no live consumer")
    return flags


def growing_without_consumer(previous: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Pending lists that grew between two snapshots while no consumer of the group was live."""
    before = {(s["stream"], g["group"]): g["pending"] for s in previous["streams"] for g in s["groups"]}
    flags = []
    for stream in current["streams"]:
        for group in stream["groups"]:
            grew = group["pending"] > before.get((stream["stream"], group["group"]), group["pending"])
            if grew and not any(c["idle_ms"] < 5000 for c in group["consumers"]):
                flags.append(f"{stream['stream']} / {group['group']}: pending list growing with no consumer")
    return flags
