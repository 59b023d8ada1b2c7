"""A consumer in its own process (so a test can SIGKILL it mid-handler).

Usage: python -m tests.helpers.consumer_proc REDIS_URL STREAM GROUP NAME LEASE_MS
The handler marks `started` and `done` counts per entry in Redis hashes; an entry with a `sleep`
field sleeps that many seconds first.
"""

from __future__ import annotations

import sys

import anyio

from services.consumer import ConsumerSettings, Entry, StreamConsumer
from services.keys import Keys
from services.redisconn import connect


async def main(url: str, stream: str, group: str, name: str, lease_ms: int) -> None:
    redis = connect(url)

    async def handle(entry: Entry) -> None:
        await redis.hincrby("started", entry.id, 1)
        await anyio.sleep(float(entry.fields.get("sleep", 0)))
        await redis.hincrby("done", entry.id, 1)

    settings = ConsumerSettings(lease_ms=lease_ms, block_ms=100, backoff_base_s=0.01)
    consumer = StreamConsumer(redis, Keys(), stream, group, name, handle, settings)
    with anyio.open_signal_receiver(__import__("signal").SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer.run)

            async def stop_on_signal() -> None:
                async for _ in signals:
                    consumer.stop()
                    return

            tg.start_soon(stop_on_signal)
            await redis.set(f"ready:{name}", "1")
    await redis.aclose()


if __name__ == "__main__":
    url, stream, group, name, lease = sys.argv[1:6]
    anyio.run(main, url, stream, group, name, int(lease))
