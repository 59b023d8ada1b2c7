"""Webhook delivery throughput: events on `wan22:events` → signed POSTs to a local receiver,
against a bare httpx client posting the same bodies to the same receiver in the same run.

    python bench/notifier.py [--deliveries 5000] [--concurrency 100] [--loop service|asyncio]

Starts its own redis-server and a minimal keep-alive HTTP receiver in a separate process (so the
receiver does not share the interpreter with what is measured). Both contenders run in this
process on the service's event loop and garbage-collector settings. Targets: ratio ≥ 0.5 and
≥ 1,000 deliveries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services import contracts, eventloop, gctuning, logs
from services.contracts import Completed, TaskState
from services.keys import Keys
from services.notifier.payload import build_body
from services.notifier.service import Notifier
from services.notifier.settings import NotifierSettings
from services.redisconn import connect
from services.settings import load
from tests.redis_server import RedisServer, free_port

LANE_SIZE = 8  # connections per client when the bare httpx baseline splits its pool
CPU_MS: dict[str, float] = {}  # CPU time of this process per request, by contender

# ---- receiver (its own process) ------------------------------------------------------------


class _Receiver(asyncio.Protocol):
    """HTTP/1.1 keep-alive: answers 200 to every POST; `GET /count` returns the POSTs so far."""

    count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = 0
            if (at := head.find(b"content-length:")) >= 0:
                length = int(head[at + 15 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith(b"get /count"):
                body = str(_Receiver.count).encode()
            else:
                _Receiver.count += 1
                body = b"ok"
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))  # type: ignore[attr-defined]


def run_receiver(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Receiver, "127.0.0.1", port, backlog=1024)
        await server.serve_forever()

    asyncio.run(main())


class Probe:
    """Asks the receiver for its count over one raw keep-alive connection: polling it through
    httpx would cost the measured process more CPU than a hundred deliveries a second do."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Probe:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def count(self) -> int:
        self.writer.write(b"GET /count HTTP/1.1\r\nhost: receiver\r\n\r\n")
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        return int(await self.reader.readexactly(length))

    def close(self) -> None:
        self.writer.close()


# ---- the two contenders --------------------------------------------------------------------


async def bare_httpx(url: str, body: bytes, n: int, concurrency: int, clients: int = 1) -> float:
    """n POSTs by `concurrency` workers sharing `clients` clients (connections split evenly)."""
    size = -(-concurrency // clients)
    limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
    pool = [httpx.AsyncClient(limits=limits) for _ in range(clients)]
    remaining = iter(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in remaining:
            response = await client.post(url, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 200

    started, cpu = time.perf_counter(), time.process_time()
    async with anyio.create_task_group() as tg:
        for i in range(concurrency):
            tg.start_soon(worker, pool[i % clients])
    rate = n / (time.perf_counter() - started)
    CPU_MS[f"bare{clients}"] = (time.process_time() - cpu) / n * 1000
    for client in pool:
        await client.aclose()
    return rate


async def preload(redis_url: str, keys: Keys, url: str, n: int) -> None:
    redis = connect(redis_url)
    for start in range(0, n, 1000):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(n, start + 1000)):
                state = TaskState(task_id=f"b{i}", status="completed", webhook_url=url, metadata={"i": str(i)})
                pipe.hset(keys.task(f"b{i}"), mapping=contracts.state_to_hash(state))
                pipe.xadd(keys.events, contracts.event_entry(Completed(task_id=f"b{i}", video_url=f"s3://b/{i}.mp4")))
            await pipe.execute()
    await redis.aclose()


async def notifier(redis_url: str, url: str, port: int, n: int, concurrency: int) -> float:
    keys = Keys()
    await preload(redis_url, keys, url, n)
    settings = load(
        NotifierSettings,
        env={},
        redis_url=redis_url,
        webhook_allow_networks=["127.0.0.1/32"],
        webhook_concurrency=concurrency,
        webhook_per_endpoint=concurrency,
        metrics_port=0,
    )
    redis = connect(redis_url)
    service = Notifier(redis, settings, name="bench")
    probe = await Probe.open(port)
    before = await probe.count()
    async with anyio.create_task_group() as tg:
        started, cpu = time.perf_counter(), time.process_time()
        tg.start_soon(service.run)
        while await probe.count() - before < n:
            await anyio.sleep(0.01)
        elapsed = time.perf_counter() - started
        CPU_MS["notifier"] = (time.process_time() - cpu) / n * 1000
        service.stop()
    probe.close()
    await redis.aclose()
    return n / elapsed


async def main(n: int, concurrency: int) -> None:
    logs.configure("console", "warning")
    gctuning.tune()  # as `wan22 notifier` does; the bare clients run under it too
    port = free_port()
    receiver = multiprocessing.get_context("spawn").Process(target=run_receiver, args=(port,), daemon=True)
    receiver.start()
    redis = RedisServer().start()
    url = f"http://127.0.0.1:{port}/hook"
    try:
        with anyio.fail_after(10):
            while True:
                try:
                    (await Probe.open(port)).close()
                    break
                except OSError:
                    await anyio.sleep(0.05)
        body = build_body(Completed(task_id="b0", video_url="s3://b/0.mp4", ts=time.time()), None)
        lanes = -(-concurrency // LANE_SIZE)
        await bare_httpx(url, body, min(n, 500), concurrency, lanes)  # warm-up
        one_client = await bare_httpx(url, body, n, concurrency)
        sharded = await bare_httpx(url, body, n, concurrency, lanes)
        delivered = await notifier(redis.url, url, port, n, concurrency)
    finally:
        redis.close()
        receiver.terminate()
    best = max(one_client, sharded)
    cpu = {"one": CPU_MS["bare1"], "lanes": CPU_MS[f"bare{lanes}"], "notifier": CPU_MS["notifier"]}
    rows = [
        (f"bare httpx, one client of {concurrency} connections", one_client, "requests/s", cpu["one"]),
        (f"bare httpx, {lanes} clients of {LANE_SIZE} connections", sharded, "requests/s", cpu["lanes"]),
        ("notifier (events → signed POSTs, durable)", delivered, "deliveries/s", cpu["notifier"]),
    ]
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"deliveries: {n}, concurrency: {concurrency}, event loop: {loop}")
    for name, rate, unit, ms in rows:
        print(f"{name:44} {rate:7.0f} {unit:12}  {ms:.2f} ms CPU each")
    print(f"ratio to the faster bare client: {delivered / best:.2f} (target ≥ 0.5)")
    print(f"ratio to one bare httpx client:  {delivered / one_client:.2f}")
    print(f"≥ 1000 deliveries/s: {'met' if delivered >= 1000 else 'not met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument(
        "--loop", choices=["service", "asyncio"], default="service", help="the service's (uvloop) or asyncio's own"
    )
    args = parser.parse_args()
    if args.loop == "service":
        eventloop.run(main, args.deliveries, args.concurrency)
    else:
        anyio.run(main, args.deliveries, args.concurrency)
