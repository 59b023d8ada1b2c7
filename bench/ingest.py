"""Ingest throughput, each door against a baseline measured in the same run.

Stream door: requests/s normalized and accepted by one `wan22 ingest` process over N requests,
against raw pipelined XADD on the same redis-server. HTTP door: requests/s and p50/p99 latency of
POST /generate at C concurrent connections (wrk when installed, else an httpx client), against a
bare starlette endpoint served by the same server settings (`services.httpserver`, `services.eventloop`).

    python bench/ingest.py [--requests 20000] [--connections 64] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from services.keys import Keys  # noqa: E402
from services.stack.redis_server import RedisServer, free_port  # noqa: E402

KEYS = Keys()
BODY = {"task": "ti2v-5B", "prompt": "a red fox running through snow", "size": "1280*704", "seed": 1}
WRK_LUA = """wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %f %f\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""
BARE_APP = """
import sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from services import eventloop, httpserver

async def generate(request):
    await request.body()
    return JSONResponse({"status": "task_started", "task_id": "x"}, status_code=202)

app = Starlette(routes=[Route("/generate", generate, methods=["POST"]), Route("/healthz", generate)])
eventloop.run(httpserver.serve, httpserver.server(app, "127.0.0.1", int(sys.argv[1])))
"""


def start_ingest(url: str, port: int, http: bool) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "WAN22_REDIS_URL": url,
        "WAN22_HTTP_HOST": "127.0.0.1",
        "WAN22_HTTP_PORT": str(port),
        "WAN22_MAX_QUEUE_LAG": "1000000000",
        "WAN22_LOG_LEVEL": "warning",
    }
    args = [sys.executable, "-m", "services.cli.main", "ingest", *([] if http else ["--no-http"])]
    return subprocess.Popen(args, env=env, cwd=ROOT)


def wait_http(url: str) -> None:
    for _ in range(200):
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def stream_door(server: RedisServer, n: int) -> tuple[float, float]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushall()
    fields = {k: str(v) for k, v in BODY.items()}
    started = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for _ in range(n):
        pipe.xadd("bench:raw", fields)
    pipe.execute()
    raw_rate = n / (time.perf_counter() - started)

    proc = start_ingest(server.url, free_port(), http=False)
    try:
        while not client.exists(KEYS.requests):
            time.sleep(0.05)
        time.sleep(0.5)
        started = time.perf_counter()
        for start in range(0, n, 1000):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(1000, n - start)):
                pipe.xadd(KEYS.requests, fields)
            pipe.execute()
        while client.xlen(KEYS.jobs("ti2v-5B")) < n:
            time.sleep(0.01)
        ingest_rate = n / (time.perf_counter() - started)
    finally:
        proc.terminate()
        proc.wait()
    return raw_rate, ingest_rate


def load(url: str, connections: int, seconds: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p99 ms) of POST /generate."""
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_LUA.format(body=json.dumps(BODY)))
        out = subprocess.run(
            ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", script.name, url + "/generate"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        _, count, duration, p50, p99 = next(line for line in out.splitlines() if line.startswith("RESULT")).split()
        return int(count) / float(duration), float(p50), float(p99)
    return _httpx_load(url, connections, seconds)


def _httpx_load(url: str, connections: int, seconds: int) -> tuple[float, float, float]:
    import anyio

    latencies: list[float] = []

    async def worker(client: httpx.AsyncClient, until: float) -> None:
        while time.perf_counter() < until:
            started = time.perf_counter()
            await client.post("/generate", json=BODY)
            latencies.append(time.perf_counter() - started)

    async def main() -> float:
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(base_url=url, limits=limits) as client, anyio.create_task_group() as tg:
            until = time.perf_counter() + seconds
            for _ in range(connections):
                tg.start_soon(worker, client, until)
        return len(latencies) / seconds

    rate = anyio.run(main)
    latencies.sort()
    return rate, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000


def http_door(server: RedisServer, connections: int, seconds: int) -> tuple[tuple, tuple]:
    port = free_port()
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)], cwd=ROOT)
    bare_result = _measure(bare, port, connections, seconds)
    redis.Redis.from_url(server.url).flushall()
    port = free_port()
    ingest_result = _measure(start_ingest(server.url, port, http=True), port, connections, seconds)
    return bare_result, ingest_result


def _measure(proc: subprocess.Popen[bytes], port: int, connections: int, seconds: int) -> tuple[float, float, float]:
    """Load the server `proc` runs on `port`, then stop it."""
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        return load(f"http://127.0.0.1:{port}", connections, seconds)
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        raw, ingest = stream_door(server, args.requests)
        print(
            f"stream door: raw pipelined XADD {raw:,.0f}/s; ingest {ingest:,.0f} requests/s; ratio {ingest / raw:.3f}"
        )
        bare, real = http_door(server, args.connections, args.seconds)
        tool = "wrk" if shutil.which("wrk") else "httpx"
        print(f"HTTP door ({tool}, {args.connections} connections, {args.seconds} s):")
        print(f"  bare starlette  {bare[0]:>8,.0f} req/s  p50 {bare[1]:6.2f} ms  p99 {bare[2]:6.2f} ms")
        print(f"  POST /generate  {real[0]:>8,.0f} req/s  p50 {real[1]:6.2f} ms  p99 {real[2]:6.2f} ms")
        print(f"  ratio {real[0] / bare[0]:.2f}")
    finally:
        server.close()


if __name__ == "__main__":
    main()
