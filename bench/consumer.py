"""Entries/s through the reliable consumer (no-op handler, per-entry and batch handler modes)
against a raw XREADGROUP + XACK loop on the same redis-server in the same run.

    python bench/consumer.py [--entries 50000] [--batch 10 50 200]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.consumer import ConsumerSettings, Entry, StreamConsumer
from services.keys import Keys
from services.redisconn import connect
from tests.redis_server import RedisServer

STREAM, GROUP = "bench:stream", "bench"


async def fill(redis, entries: int) -> None:
    await redis.delete(STREAM)
    await redis.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    payload = {"type": "job", "task_id": "t", "payload": '{"task_id": "t", "n": 1}'}
    for start in range(0, entries, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for _ in range(min(1000, entries - start)):
                pipe.xadd(STREAM, payload)
            await pipe.execute()


async def raw_loop(redis, entries: int, batch: int) -> float:
    await fill(redis, entries)
    started, done = time.perf_counter(), 0
    while done < entries:
        response = await redis.xreadgroup(GROUP, "raw", {STREAM: ">"}, count=batch, block=100)
        ids = [entry_id for _, rows in response for entry_id, _ in rows]
        await redis.xack(STREAM, GROUP, *ids)
        done += len(ids)
    return entries / (time.perf_counter() - started)


async def library(redis, entries: int, batch: int, batched: bool) -> float:
    """Per-entry handlers (one worker task each, up to `batch` at once), or batch handlers (one
    call per read, two reads in flight)."""
    await fill(redis, entries)
    done = 0
    finished = anyio.Event()

    async def handle(entry: Entry) -> None:
        nonlocal done
        done += 1
        if done == entries:
            finished.set()

    async def handle_batch(batch_entries: list[Entry]) -> list[BaseException | None]:
        for entry in batch_entries:
            await handle(entry)
        return [None] * len(batch_entries)

    concurrency = 2 * batch if batched else batch
    settings = ConsumerSettings(batch=batch, concurrency=concurrency, block_ms=100, trim_interval_s=0)
    handlers = {"batch_handler": handle_batch} if batched else {}
    consumer = StreamConsumer(
        redis, Keys("bench"), STREAM, GROUP, "lib", None if batched else handle, settings, **handlers
    )
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(consumer.run)
        await finished.wait()
        elapsed = time.perf_counter() - started
        consumer.stop()
    return entries / elapsed


async def main(entries: int, batches: list[int]) -> None:
    server = RedisServer().start()
    redis = connect(server.url)
    try:
        print(f"{'batch':>6} {'raw/s':>10} {'per-entry/s':>12} {'ratio':>6} {'batched/s':>10} {'ratio':>6}")
        for batch in batches:
            raw = await raw_loop(redis, entries, batch)
            single = await library(redis, entries, batch, batched=False)
            batched = await library(redis, entries, batch, batched=True)
            print(
                f"{batch:>6} {raw:>10.0f} {single:>12.0f} {single / raw:>6.2f} {batched:>10.0f} {batched / raw:>6.2f}"
            )
    finally:
        await redis.aclose()
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=50_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[10, 50, 200])
    args = parser.parse_args()
    anyio.run(main, args.entries, args.batch)
