"""Redis failover under a real Sentinel setup (tests/sentinel_cluster.py): a real ingest process
with `WAN22_REDIS_URL=redis+sentinel://…` and WAIT 1 on its accept path.

Exactly-once here means: every request that got a 2xx answer has its task and exactly one job
entry on whichever primary is left, and a request the client had to retry (a 503, a dropped
connection) still maps to one task, through its idempotency key or its task id."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import redis as redis_sync
from redis.asyncio import Redis

from services.keys import INGEST_GROUP, Keys
from services.redisconn import connect, connect_sync
from tests.redis_server import free_port
from tests.sentinel_cluster import SentinelCluster, wait_until
from tests.services_proc import ROOT, ServiceProcess

KEYS = Keys()
MODELS_TOML = """
[tasks.demo]
base = "ti2v-5B"
ckpt_dir = "/models/demo"
sizes = ["96*64"]
"""
BODY = {"task": "demo", "prompt": "a red fox", "size": "96*64"}
HTTP_JOBS, STREAM_JOBS = 240, 30


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path / "redis").start()
    yield cluster
    cluster.close()


@pytest.fixture
def ingest(cluster: SentinelCluster, tmp_path: Path) -> Iterator[tuple[str, ServiceProcess]]:
    (tmp_path / "models.toml").write_text(MODELS_TOML)
    port = free_port()
    env = {
        "WAN22_REDIS_URL": cluster.url,
        "WAN22_REDIS_WAIT_REPLICAS": "1",
        "WAN22_REDIS_WAIT_TIMEOUT_MS": "500",
        "WAN22_HTTP_HOST": "127.0.0.1",
        "WAN22_HTTP_PORT": str(port),
        "WAN22_MODELS": str(tmp_path / "models.toml"),
        "WAN22_MAX_QUEUE_LAG": "100000",  # no generator drains the queue here
        "WAN22_LEASE_MS": "2000",
    }
    proc = ServiceProcess(["ingest"], env, tmp_path / "ingest.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_http(url + "/healthz")
        yield url, proc
    finally:
        proc.stop()


async def submit(http: httpx.AsyncClient, key: str, retries: Counter[str]) -> str:
    """POST until a 2xx answer, as a client with an idempotency key does; the task id it names."""
    with anyio.fail_after(90):
        while True:
            try:
                response = await http.post("/generate", json=BODY, headers={"Idempotency-Key": key})
                if response.status_code in (200, 202):
                    return str(response.json()["task_id"])
                assert response.status_code == 503, response.text  # Redis away or not replicated
                retries[response.json()["reason"]] += 1
            except httpx.TransportError:
                retries["transport"] += 1
            await anyio.sleep(0.05)


def job_entries(client: redis_sync.Redis) -> Counter[str]:
    """Task id → its entries in the demo job stream."""
    return Counter(fields["task_id"] for _, fields in client.xrange(KEYS.jobs("demo")))


async def test_an_accept_no_replica_confirmed_is_not_answered_and_its_retry_maps_to_the_same_task(cluster, ingest):
    url, _ = ingest
    primary = cluster.primary.client()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        confirmed = await http.post("/generate", json=BODY, headers={"Idempotency-Key": "k0"})
        assert confirmed.status_code == 202, confirmed.text
        cluster.replica.pause()  # it acknowledges nothing, as when it is partitioned away
        try:
            unconfirmed = await http.post("/generate", json=BODY, headers={"Idempotency-Key": "k1"})
        finally:
            cluster.replica.resume()
        assert unconfirmed.status_code == 503, unconfirmed.text
        assert unconfirmed.json()["reason"] == "unavailable" and "replicas" in unconfirmed.json()["error"]
        written = primary.get(KEYS.idempotency("k1"))
        assert written, "the primary ran the accept; only its answer was held back"
        retried = await http.post("/generate", json=BODY, headers={"Idempotency-Key": "k1"})
    assert retried.status_code == 200 and retried.json()["duplicate"] is True, retried.text
    assert retried.json()["task_id"] == written
    assert job_entries(primary) == {confirmed.json()["task_id"]: 1, written: 1}


async def write_stream_requests(cluster: SentinelCluster, count: int) -> None:
    """The Go side's part: XADD each request and WAIT for a replica, again until acknowledged."""
    client = connect(cluster.url)
    try:
        with anyio.fail_after(90):
            await _write_each(client, count)
    finally:
        await client.aclose()


async def _write_each(client: Redis, count: int) -> None:
    for i in range(count):
        fields = {"task": "demo", "prompt": "a red fox", "size": "96*64", "task_id": f"s-{i}"}
        while True:
            try:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.xadd(KEYS.requests, fields)
                    pipe.execute_command("WAIT", 1, 500)
                    _, acknowledged = await pipe.execute()
                if acknowledged >= 1:
                    break
            except redis_sync.RedisError:
                pass
            await anyio.sleep(0.05)
        await anyio.sleep(0.1)


async def fail_over(cluster: SentinelCluster, answered: dict[str, str], at: int, killed_after: list[int]) -> None:
    """SIGKILL the primary once `at` requests are answered; once the sentinels have promoted the
    replica, restart the old primary (as a supervisor would): they make it the new replica."""
    while len(answered) < at:
        await anyio.sleep(0.01)
    cluster.primary.kill()
    killed_after.append(len(answered))
    await anyio.to_thread.run_sync(cluster.wait_promoted)
    await anyio.to_thread.run_sync(cluster.primary.start)


@pytest.mark.slow
async def test_no_accepted_job_is_lost_or_doubled_when_the_primary_is_killed_mid_load(cluster, ingest):
    url, proc = ingest
    answered: dict[str, str] = {}
    retries: Counter[str] = Counter()
    killed_after: list[int] = []

    async def client(keys: list[str], http: httpx.AsyncClient) -> None:
        for key in keys:
            answered[key] = await submit(http, key, retries)

    keys = [f"h-{i}" for i in range(HTTP_JOBS)]
    async with httpx.AsyncClient(base_url=url, timeout=30) as http, anyio.create_task_group() as tg:
        tg.start_soon(fail_over, cluster, answered, HTTP_JOBS // 3, killed_after)
        tg.start_soon(write_stream_requests, cluster, STREAM_JOBS)
        for i in range(8):
            tg.start_soon(client, keys[i::8], http)

    assert killed_after and killed_after[0] < HTTP_JOBS, "the primary died mid-load"
    assert retries["unavailable"] + retries["transport"] > 0, retries
    # The replica, or the old primary after a second failover on a busy machine.
    wait_until(lambda: cluster.current_primary().client().info("replication")["role"] == "master", 30, "a primary")
    left = cluster.current_primary()
    promoted = left.client()
    stream_ids = {f"s-{i}" for i in range(STREAM_JOBS)}
    wait_until(lambda: stream_requests_done(promoted, stream_ids), 30, "every stream request accepted and acked")
    entries = job_entries(promoted)
    for key, task_id in answered.items():
        assert promoted.hget(KEYS.task(task_id), "status") == "queued", (key, task_id)
        assert promoted.get(KEYS.idempotency(key)) == task_id, key
        assert entries[task_id] == 1, (key, task_id, entries[task_id])
    assert all(entries[task_id] == 1 for task_id in stream_ids)
    assert len(set(answered.values())) == HTTP_JOBS  # one task per idempotency key
    assert sorted(entries) == sorted([*answered.values(), *stream_ids])  # no job nobody was told of
    assert promoted.xlen(KEYS.dlq) == 0  # no request given up on while a replica was missing
    assert proc.proc is not None and proc.proc.poll() is None, proc.log_tail()
    check_clients_reach(cluster, left.port)


def stream_requests_done(client: redis_sync.Redis, task_ids: set[str]) -> bool:
    accepted = all(client.exists(KEYS.task(task_id)) for task_id in task_ids)
    [group] = [g for g in client.xinfo_groups(KEYS.requests) if g["name"] == INGEST_GROUP]
    return accepted and group["pending"] == 0 and group["lag"] == 0


def check_clients_reach(cluster: SentinelCluster, primary_port: int) -> None:
    """The blocking client and a CLI command find the promoted primary through the sentinels."""
    client = connect_sync(cluster.url)
    try:
        assert int(client.info("server")["tcp_port"]) == primary_port
    finally:
        client.close()
    cli = [sys.executable, "-m", "services.cli.main", "status", "s-0", "--redis-url", cluster.url, "--json"]
    done = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "queued"
