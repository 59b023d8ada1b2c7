"""The whole-stack soak: `wan22 up`'s stack (two world-size-2 gangs, ingest, notifier, Redis with
AOF `appendfsync always`), a load of good, bad, duplicate and cancelled requests, and faults
while it runs: generators, ingest and the notifier SIGKILLed, Redis killed and restarted, a Ray
actor inside a gang killed. Then everything is checked against what was sent."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx

from services.keys import Keys
from services.redisconn import connect
from services.stack.redis_server import free_port
from services.stack.up import Stack, StackOptions, responds
from tests.chaos.load import Request, build
from tests.chaos.receiver import Receiver

KEYS = Keys()
SECRET = "whsec_c29ha2luZy10aGUtd2hvbGUtc3RhY2stdG9kYXk="
MODELS = """[tasks.demo]
base = "ti2v-5B"
ckpt_dir = "{ckpt}"
world_size = 2
sizes = ["64*64"]
frame_num = 5
sample_steps = 6
max_attempts = 6
"""


@dataclass
class Soak:
    stack: Stack
    receiver: Receiver
    requests: list[Request]
    faults: list[tuple[str, float, float]] = field(default_factory=list)  # (fault, at, recovered after s)
    outage_answers: list[int] = field(default_factory=list)  # HTTP statuses while Redis was down
    started: float = 0.0


def stack_env(models: Path) -> dict[str, str]:
    return {
        "WAN22_MODELS": str(models),
        "WAN22_WEBHOOK_ALLOW_NETWORKS": "127.0.0.1/32",
        "WAN22_WEBHOOK_SCHEDULE": "0,0.5,1,1,2,2,3,3",
        "WAN22_WEBHOOK_TIMEOUT_S": "1",
        "WAN22_WEBHOOK_SECRET": SECRET,
        "WAN22_LEASE_MS": "3000",
        "WAN22_BACKOFF_BASE_S": "0.3",
        "WAN22_GRACE_S": "2",
        "WAN22_MAX_QUEUE_LAG": "100000",
        "WAN22_LOG_FORMAT": "json",
    }


async def start(tmp: Path, ckpt: Path, n: int) -> Soak:
    (tmp / "models.toml").write_text(MODELS.format(ckpt=ckpt))
    os.environ.update(stack_env(tmp / "models.toml"))
    options = StackOptions(
        state_dir=tmp / "state",
        http_port=free_port(),
        storage=str(tmp / "outputs"),
        fsync="always",
        world_size=2,
        replicas=2,
        only=["demo"],
    )
    stack = Stack(options)
    await stack.start()
    receiver = Receiver(SECRET).start()
    return Soak(stack, receiver, build(n, receiver.url))


# ---- load ------------------------------------------------------------------------------------


async def submit_all(soak: Soak, spread_s: float) -> None:
    """Send every request (retrying while Redis or ingest is down, as a client would)."""
    gap = spread_s / max(1, len(soak.requests))
    async with httpx.AsyncClient(base_url=soak.stack.api_url, timeout=10) as http, anyio.create_task_group() as tg:
        for request in soak.requests:
            tg.start_soon(_submit_one, soak, http, request)
            await anyio.sleep(gap)


async def _submit_one(soak: Soak, http: httpx.AsyncClient, request: Request) -> None:
    while True:
        try:
            if request.door == "stream":
                await _xadd(soak, request)
            else:
                await _post(http, request)
            break
        except (OSError, httpx.HTTPError, RetryLater):
            await anyio.sleep(0.5)
    if request.cancel and request.task_id:
        await _cancel(soak, http, request)


class RetryLater(Exception):
    pass


async def _xadd(soak: Soak, request: Request) -> None:
    redis = connect(soak.stack.env["WAN22_REDIS_URL"])
    try:
        assert request.fields is not None
        request.request_id = await redis.xadd(KEYS.requests, request.fields)
        request.task_id = request.fields.get("task_id", "")
    except Exception as exc:
        raise RetryLater(str(exc)) from None
    finally:
        await redis.aclose()


async def _post(http: httpx.AsyncClient, request: Request) -> None:
    response = await http.post("/generate", content=request.body, headers=request.headers)
    request.status = response.status_code
    if response.status_code >= 500:
        soak_outage = response.json()  # 503 JSON while Redis is down, never a trace
        assert "error" in soak_outage
        raise RetryLater(soak_outage["error"])
    if response.status_code < 300:
        request.task_id = response.json()["task_id"]


async def _cancel(soak: Soak, http: httpx.AsyncClient, request: Request) -> None:
    if request.cancel == "running":
        await _wait_running(soak, request.task_id)
    while True:
        try:
            response = await http.delete(f"/tasks/{request.task_id}")
        except httpx.HTTPError:
            await anyio.sleep(0.5)
            continue
        if response.status_code in (200, 202, 409):
            request.cancel_outcome = response.json().get("status") or response.json().get("error", "")
            return
        await anyio.sleep(0.5)  # 404 before a stream request was accepted, 503 during the outage


async def _wait_running(soak: Soak, task_id: str, timeout: float = 120) -> None:
    redis = connect(soak.stack.env["WAN22_REDIS_URL"])
    try:
        with anyio.move_on_after(timeout):
            while True:
                try:
                    if (await redis.hget(KEYS.task(task_id), "status")) in ("running", "completed", "failed"):
                        return
                except Exception:
                    pass
                await anyio.sleep(0.05)
    finally:
        await redis.aclose()


# ---- faults ----------------------------------------------------------------------------------


def child(soak: Soak, name: str):  # type: ignore[no-untyped-def]
    assert soak.stack.supervisor is not None
    return next(c for c in soak.stack.supervisor.children if c.name == name)


async def kill_child(soak: Soak, name: str, ready_url: str) -> None:
    target = child(soak, name)
    assert target.process is not None
    at = time.monotonic()
    os.kill(target.process.pid, signal.SIGKILL)
    await anyio.sleep(0.3)
    async with httpx.AsyncClient(timeout=2) as http:
        while not await responds(http, ready_url):
            await anyio.sleep(0.2)
    soak.faults.append((f"SIGKILL {name}", at - soak.started, time.monotonic() - at))


async def restart_redis(soak: Soak, down_s: float = 2.0) -> None:
    server = soak.stack.redis
    assert server is not None
    at = time.monotonic()
    await anyio.to_thread.run_sync(server.kill)
    async with httpx.AsyncClient(base_url=soak.stack.api_url, timeout=5) as http:
        await anyio.sleep(down_s / 2)
        for path, body in (("/readyz", None), ("/generate", b'{"task": "demo", "prompt": "during the outage"}')):
            response = await (http.post(path, content=body) if body else http.get(path))
            soak.outage_answers.append(response.status_code)
            assert response.headers["content-type"].startswith("application/json"), response.text
        await anyio.sleep(down_s / 2)
        await anyio.to_thread.run_sync(server.start)
        while not await responds(http, f"{soak.stack.api_url}/readyz"):
            await anyio.sleep(0.2)
    soak.faults.append(("restart redis-server (SIGKILL)", at - soak.started, time.monotonic() - at))


async def kill_ray_actor(soak: Soak) -> None:
    """SIGKILL rank 1 of a gang while it works; recovered when that gang is back with a new rank."""
    redis = connect(soak.stack.env["WAN22_REDIS_URL"])
    try:
        key = await _busy_gang(redis)
        old = await redis.hget(key, "1")
        at = time.monotonic()
        os.kill(int(old.rsplit(":", 1)[1]), signal.SIGKILL)
        with anyio.fail_after(300):
            while (await redis.hget(key, "1")) in (old, None):
                await anyio.sleep(0.2)
        soak.faults.append(("SIGKILL a Ray rank in a gang", at - soak.started, time.monotonic() - at))
    finally:
        await redis.aclose()


async def _busy_gang(redis) -> str:  # type: ignore[no-untyped-def]
    with anyio.fail_after(120):
        while True:
            keys = [key async for key in redis.scan_iter(f"{KEYS.prefix}:gang:*")]
            if keys:
                return keys[0]
            await anyio.sleep(0.2)


async def inject_faults(soak: Soak, gap_s: float) -> None:
    stack = soak.stack
    generators = sorted(stack.generator_ports)
    ready = {name: f"http://127.0.0.1:{port}/readyz" for name, port in stack.generator_ports.items()}
    await anyio.sleep(gap_s)
    await kill_child(soak, generators[0], ready[generators[0]])
    await anyio.sleep(gap_s)
    await kill_child(soak, "ingest", f"{stack.api_url}/readyz")
    await anyio.sleep(gap_s)
    notifier_port = child(soak, "notifier").env["WAN22_METRICS_PORT"]
    await kill_child(soak, "notifier", f"http://127.0.0.1:{notifier_port}/metrics")
    await anyio.sleep(gap_s)
    await restart_redis(soak)
    await anyio.sleep(gap_s)
    await kill_child(soak, generators[-1], ready[generators[-1]])
    await anyio.sleep(gap_s)
    await kill_ray_actor(soak)
