"""Gangs across Ray nodes: a real cluster of a head and worker nodes on this machine, each worker at
an address of its own (127.0.0.2, ...), and generators joining it through Ray Client
(RAY_ADDRESS=ray://...), as generator pods join a KubeRay head. The gang is STRICT_SPREAD: one rank
per node. The tests share the cluster and the first generator and run in order: the nodes each
one starts with are those the one before left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx
import pytest

from services import gangs
from tests.generator.cluster import MultiNodeCluster
from tests.generator.conftest import Generator, Generators
from tests.generator.helpers import KEYS, events_for, submit, wait_drained, wait_status, wait_step
from tests.redis_server import RedisServer
from tests.services_proc import ROOT

pytestmark = pytest.mark.slow

IPS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]  # worker nodes, in the order they join
GENERATOR_ID = "multinode"
PLACEMENT = KEYS.placement_group("demo", GENERATOR_ID)
LONG_JOB_STEPS = 150  # long enough to stop a node while it runs


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[MultiNodeCluster]:
    cluster = MultiNodeCluster(tmp_path_factory.mktemp("ray-logs"))
    try:
        yield cluster.start(IPS[:2])
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def generators(redis_server: RedisServer, cluster: MultiNodeCluster, tiny_ckpt, tmp_path_factory) -> Iterator:
    launcher = Generators(
        redis_server.url, cluster.head.client_address, tiny_ckpt, tmp_path_factory.mktemp("multinode"), "STRICT_SPREAD"
    )
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def first(generators: Generators) -> Generator:
    # A dead driver's Ray Client session, and its placement group, stay on the head this long (Ray's
    # default is 30 s): only the restarted driver's own clean-up can free the reservation in time.
    return generators.start(WAN22_GENERATOR_ID=GENERATOR_ID, RAY_CLIENT_RECONNECT_GRACE_PERIOD="600")


async def test_gang_spreads_over_two_nodes_and_meets_at_rank_0s_node_ip(redis, cluster, first):
    gang = await gang_of(redis, cluster, first, READY)
    members = gang["members"]
    nodes = cluster.workers()
    assert [m["rank"] for m in members] == [0, 1]
    assert sorted(m["node_id"] for m in members) == sorted(nodes), "one rank on each worker node"
    assert [m["host"] for m in members] == [nodes[m["node_id"]] for m in members], "hosts are Ray's node IPs"
    master_host, _ = gang["master"].rsplit(":", 1)
    assert master_host == nodes[members[0]["node_id"]] and master_host in IPS[:2]  # not loopback, not a hostname
    table = cluster.placement_group(PLACEMENT)
    assert table is not None and (table["state"], table["strategy"]) == ("CREATED", "STRICT_SPREAD")
    assert [table["bundles_to_node_id"][rank] for rank in (0, 1)] == [m["node_id"] for m in members]

    task_ids = [await submit(redis, steps=3) for _ in range(2)]
    for task_id in task_ids:
        assert (await wait_status(redis, task_id, {"completed", "failed"}))["status"] == "completed"
        assert [kind for kind, _ in await events_for(redis, task_id)] == ["accepted", "started", "completed"]
    await wait_drained(redis)


async def test_node_lost_mid_job_gang_waits_for_capacity_then_reforms_and_the_job_completes_once(
    redis, redis_server, cluster, first
):
    gang = await gang_of(redis, cluster, first, READY)
    lost = gang["members"][0]["host"]  # rank 0's node: the rendezvous and the encoder go with it
    [kept] = [m["host"] for m in gang["members"] if m["host"] != lost]
    task_id = await submit(redis, steps=LONG_JOB_STEPS)
    await wait_step(redis, task_id, 2)
    await anyio.to_thread.run_sync(cluster.stop_node, lost)

    waiting = await gang_of(redis, cluster, first, WAITING)
    assert waiting["members"] == [] and waiting["world_size"] == 2
    await _shows_waiting(first, redis_server.url)
    table = cluster.placement_group(PLACEMENT)
    assert table is not None and table["state"] == "PENDING"  # the demand Ray's autoscaler acts on
    queued = await submit(redis, steps=2)
    await _not_claimed(redis, queued, held=1)  # the job that was running is held, nothing else taken

    await anyio.to_thread.run_sync(cluster.add_node, IPS[2])
    state = await wait_status(redis, task_id, {"completed", "failed"}, timeout=300)
    assert state["status"] == "completed", state
    kinds = [kind for kind, _ in await events_for(redis, task_id)]
    assert kinds.count("completed") == 1 and kinds[-1] == "completed" and "retrying" in kinds, kinds
    assert (await wait_status(redis, queued, {"completed", "failed"}))["status"] == "completed"
    assert [kind for kind, _ in await events_for(redis, queued)] == ["accepted", "started", "completed"]
    reformed = await gang_of(redis, cluster, first, READY)
    assert {m["host"] for m in reformed["members"]} == {kept, IPS[2]}
    assert reformed["master"].rsplit(":", 1)[0] == reformed["members"][0]["host"]
    assert (await _get(first, "/readyz")).json() == {"status": "ready"}
    assert 'wan22_gang_waiting_for_capacity{task="demo"} 0.0' in (await _get(first, "/metrics")).text
    await wait_drained(redis)


async def test_restarted_driver_removes_its_old_placement_group_then_waits_for_a_node(
    redis, cluster, generators, first
):
    await gang_of(redis, cluster, first, READY)
    old = cluster.placement_group(PLACEMENT)
    assert old is not None
    first.proc.stop(signal.SIGKILL)
    left = cluster.placement_group(PLACEMENT)
    # What there is to clean up: the dead driver's session still holds its reservation.
    assert left is not None and left["placement_group_id"] == old["placement_group_id"]
    await anyio.to_thread.run_sync(cluster.stop_node, IPS[2])  # one node short for the new gang
    [survivor] = cluster.workers().values()
    task_id = await submit(redis, steps=2)

    # Through the GCS address: a new Ray Client driver while a dead one's session lingers trips a
    # fork race in Ray's client proxy (ray-project/ray#63202) that can hang its connection.
    restarted = generators.start(wait=False, WAN22_GENERATOR_ID=GENERATOR_ID, RAY_ADDRESS=cluster.head.address)
    await gang_of(redis, cluster, restarted, WAITING)
    new = cluster.placement_group(PLACEMENT)
    assert new is not None and new["placement_group_id"] != old["placement_group_id"]
    assert new["state"] == "PENDING"
    assert cluster.placement_group_state(old["placement_group_id"]) == "REMOVED"
    await _not_claimed(redis, task_id, held=0)

    await anyio.to_thread.run_sync(cluster.add_node, IPS[3])
    assert (await wait_status(redis, task_id, {"completed", "failed"}, timeout=300))["status"] == "completed"
    assert [kind for kind, _ in await events_for(redis, task_id)] == ["accepted", "started", "completed"]
    formed = await gang_of(redis, cluster, restarted, READY)
    assert {m["host"] for m in formed["members"]} == {survivor, IPS[3]}
    await wait_drained(redis)


READY: Callable[[dict[str, Any]], bool] = lambda g: g["state"] == gangs.READY and len(g["members"]) == 2  # noqa: E731
WAITING: Callable[[dict[str, Any]], bool] = lambda g: g["state"] == gangs.WAITING  # noqa: E731


async def gang_of(
    redis, cluster: MultiNodeCluster, generator: Generator, match: Callable[[dict[str, Any]], bool]
) -> dict:
    """The generator's gang record (`wan22 groups` reads the same) once it matches."""
    assert generator.proc.proc is not None
    marker = f"-{generator.proc.proc.pid}-"  # consumer names hold the process id
    with anyio.fail_after(240):
        while True:
            if generator.proc.proc.poll() is not None:
                raise AssertionError(f"generator exited: {generator.proc.log_tail()}\n{cluster.client_log_tail()}")
            for gang in await gangs.read_all(redis, KEYS):
                if marker in gang["consumer"] and match(gang):
                    return gang
            await anyio.sleep(0.2)


async def _shows_waiting(generator: Generator, redis_url: str) -> None:
    """/readyz, the metric and `wan22 groups --json` all say the gang waits for capacity."""
    ready = await _get(generator, "/readyz")
    assert (ready.status_code, ready.json()) == (503, {"status": "waiting_for_capacity"})
    assert 'wan22_gang_waiting_for_capacity{task="demo"} 1.0' in (await _get(generator, "/metrics")).text
    snap = json.loads(await _wan22_groups(redis_url, "--json"))
    pid = generator.proc.proc.pid if generator.proc.proc else None
    [shown] = [g for g in snap["gangs"] if f"-{pid}-" in g["consumer"]]
    assert shown["state"] == "waiting_for_capacity" and shown["strategy"] == "STRICT_SPREAD"
    assert any(shown["consumer"] in flag and "waiting for capacity" in flag for flag in snap["flags"])
    text = (await _wan22_groups(redis_url)).splitlines()
    [line] = [line for line in text if line.startswith(f"gang {shown['consumer']} ")]
    assert "waiting_for_capacity" in line and "STRICT_SPREAD" in line


async def _wan22_groups(redis_url: str, *args: str) -> str:
    command = [sys.executable, "-m", "services.cli.main", "groups", *args]
    env = os.environ | {"WAN22_REDIS_URL": redis_url}
    done = await anyio.to_thread.run_sync(
        lambda: subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _get(generator: Generator, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(generator.metrics_url + path)


async def _not_claimed(redis, task_id: str, held: int) -> None:
    """The job stays queued and undelivered over several of the generator's heartbeats (1 s): a
    consumer that claims would have it within milliseconds."""
    for _ in range(30):
        assert (await redis.hget(KEYS.task(task_id), "status")) == "queued"
        assert await _delivered(redis) == held
        await anyio.sleep(0.1)


async def _delivered(redis) -> int:
    """Entries of the job stream delivered and not acked (none while no group exists yet)."""
    return sum(int(g["pending"]) for g in await redis.xinfo_groups(KEYS.jobs("demo")))
