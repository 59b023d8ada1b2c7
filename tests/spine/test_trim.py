"""Trimming never drops an entry a group has not delivered or not acked; lag stays computable."""

from __future__ import annotations

from services.consumer import ensure_group, safe_trim_point, trim_stream

STREAM = "wan22:test:trim"


async def test_trim_keeps_undelivered_and_unacked_entries(redis):
    await ensure_group(redis, STREAM, "a")
    await ensure_group(redis, STREAM, "b")
    ids = [await redis.xadd(STREAM, {"n": str(i)}) for i in range(10)]
    # group a: delivered 6, acked all but #2; group b: delivered 4, acked all.
    await redis.xreadgroup("a", "ca", {STREAM: ">"}, count=6)
    await redis.xack(STREAM, "a", *[i for i in ids[:6] if i != ids[2]])
    await redis.xreadgroup("b", "cb", {STREAM: ">"}, count=4)
    await redis.xack(STREAM, "b", *ids[:4])

    assert await safe_trim_point(redis, STREAM) == ids[2]
    removed = await trim_stream(redis, STREAM, retain_s=0)
    assert removed == 2
    remaining = [entry_id for entry_id, _ in await redis.xrange(STREAM)]
    assert remaining == ids[2:]
    groups = {g["name"]: g for g in await redis.xinfo_groups(STREAM)}
    assert groups["a"]["lag"] == 4 and groups["b"]["lag"] == 6  # never NULL after a safe trim


async def test_trim_respects_retention_window(redis):
    await ensure_group(redis, STREAM, "a")
    ids = [await redis.xadd(STREAM, {"n": str(i)}) for i in range(5)]
    await redis.xreadgroup("a", "ca", {STREAM: ">"}, count=5)
    await redis.xack(STREAM, "a", *ids)
    assert await trim_stream(redis, STREAM, retain_s=3600) == 0
    assert await trim_stream(redis, STREAM, retain_s=0) == 4  # the last delivered id stays
    assert await safe_trim_point(redis, "wan22:test:absent") is None
