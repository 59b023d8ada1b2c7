"""Every operator command, run as a real `wan22` process against a real Redis and ingest."""

from __future__ import annotations

import json
import subprocess
import sys

import anyio

from services.consumer import Entry, dead_letter, ensure_group
from services.contracts import Completed, ErrorRecord, Failed, Progress, encode, now
from services.keys import GENERATOR_GROUP, INGEST_GROUP, Keys
from services.tasks import TaskStore
from tests.services_proc import ROOT

KEYS = Keys()


def wan22(redis_url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "services.cli.main", *args]
    env = {"WAN22_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


async def run_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: wan22(redis_url, *args))


async def test_submit_over_stream_and_http_then_status_and_cancel(redis, redis_url, ingest_url):
    done = await run_cli(redis_url, "submit", "--task", "demo", "--prompt", "a cat", "--seed", "5")
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    state = await redis.hgetall(KEYS.task(task_id))
    assert state["status"] == "queued"

    over_http = await run_cli(redis_url, "submit", "--api", ingest_url, "--task", "demo", "--prompt", "b", "--json")
    assert over_http.returncode == 0 and json.loads(over_http.stdout)["task_id"]

    status = await run_cli(redis_url, "status", task_id, "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "queued"
    cancel = await run_cli(redis_url, "cancel", task_id)
    assert cancel.returncode == 0 and cancel.stdout.strip() == "cancelled"
    again = await run_cli(redis_url, "cancel", task_id)
    assert again.returncode == 1 and "already cancelled" in again.stderr
    missing = await run_cli(redis_url, "status", "nope")
    assert missing.returncode == 4 and missing.stderr.count("\n") == 1  # one line, no trace


async def test_rejected_submit_exits_3_with_the_reason(redis_url, ingest_url):
    bad = await run_cli(redis_url, "submit", "--task", "demo", "--prompt", "x", "--size", "3*3")
    assert bad.returncode == 3 and "(size)" in bad.stderr and "64*64" in bad.stderr
    bad_http = await run_cli(
        redis_url, "submit", "--api", ingest_url, "--task", "demo", "--prompt", "x", "--frames", "6"
    )
    assert bad_http.returncode == 3 and "HTTP 422" in bad_http.stderr


async def test_redis_down_is_one_line_and_exit_5():
    done = await run_cli("redis://127.0.0.1:1/0", "status", "x")
    assert done.returncode == 5 and "cannot reach Redis" in done.stderr and "Traceback" not in done.stderr


async def _clients_in(redis, command: str) -> int:
    return sum(client.get("cmd") == command for client in await redis.client_list())


async def _until_another_client_blocks_in(redis, command: str, before: int, timeout_s: float = 60) -> None:
    with anyio.fail_after(timeout_s):
        while await _clients_in(redis, command) <= before:
            await anyio.sleep(0.05)


async def test_watch_and_submit_wait_follow_until_terminal(redis, redis_url, ingest_url):
    store = TaskStore(redis, KEYS)
    done = await run_cli(redis_url, "submit", "--task", "demo", "--prompt", "watch me")
    task_id = done.stdout.strip()

    following = await _clients_in(redis, "xread")

    async def finish_later() -> None:
        await _until_another_client_blocks_in(redis, "xread", following)  # `watch` is up and following
        progress = Progress(task_id=task_id, step=1, total=1, percent=100.0)
        await redis.xadd(KEYS.progress, {"type": "progress", "task_id": task_id, "payload": encode(progress)})
        await store.finish(Completed(task_id=task_id, video_url="file:///v.mp4"), {"video_url": "file:///v.mp4"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(finish_later)
        watched = await run_cli(redis_url, "watch", task_id)
    assert watched.returncode == 0 and "100.0%" in watched.stderr and "completed" in watched.stderr

    failing = (await run_cli(redis_url, "submit", "--task", "demo", "--prompt", "fail me")).stdout.strip()

    async def fail_later() -> None:
        await anyio.sleep(1.5)
        await store.finish(Failed(task_id=failing, error="boom"), {"error": "boom"})

    async with anyio.create_task_group() as tg:
        tg.start_soon(fail_later)
        waited = await run_cli(
            redis_url, "submit", "--task", "demo", "--prompt", "fail me", "--task-id", failing, "--wait"
        )
    assert waited.returncode == 1 and "failed: boom" in waited.stderr


async def test_groups_json_matches_xinfo(redis, redis_url, ingest_url):
    for prompt in ("a", "b", "c"):
        assert (await run_cli(redis_url, "submit", "--task", "demo", "--prompt", prompt)).returncode == 0
    high = await run_cli(redis_url, "submit", "--task", "demo", "--prompt", "h", "--priority", "high")
    assert high.returncode == 0, high.stderr
    for stream in KEYS.job_streams("demo"):
        await ensure_group(redis, stream, GENERATOR_GROUP)
    await redis.xreadgroup(GENERATOR_GROUP, "gpu-1", {KEYS.jobs("demo"): ">"}, count=1)
    done = await run_cli(redis_url, "groups", "--json")
    assert done.returncode == 0, done.stderr
    snap = json.loads(done.stdout)
    by_stream = {s["stream"]: s for s in snap["streams"]}
    watched = [(stream, GENERATOR_GROUP) for stream in KEYS.job_streams("demo")] + [(KEYS.requests, INGEST_GROUP)]
    for stream, group in watched:
        [xinfo] = [g for g in await redis.xinfo_groups(stream) if g["name"] == group]
        [shown] = [g for g in by_stream[stream]["groups"] if g["group"] == group]
        assert (shown["lag"], shown["pending"], shown["last_delivered_id"]) == (
            xinfo["lag"],
            xinfo["pending"],
            xinfo["last-delivered-id"],
        )
        assert by_stream[stream]["length"] == await redis.xlen(stream)
        consumers = {c["name"]: c["pending"] for c in await redis.xinfo_consumers(stream, group)}
        assert {c["name"]: c["pending"] for c in shown["consumers"]} == consumers
    jobs = next(g for g in by_stream[KEYS.jobs("demo")]["groups"])
    assert jobs["lag"] == 2 and jobs["pending"] == 1 and jobs["oldest_pending_ms"] >= 0
    assert [g["lag"] for g in by_stream[KEYS.jobs("demo", "high")]["groups"]] == [1]
    text = await run_cli(redis_url, "groups")
    assert "wan22:jobs:demo" in text.stdout and "gpu-1(1" in text.stdout
    assert "wan22:jobs:demo:high" in text.stdout and "wan22:jobs:demo:low" in text.stdout


async def test_dlq_list_show_replay_purge(redis, redis_url):
    store = TaskStore(redis, KEYS)
    ids = []
    for n in range(3):
        task_id = f"dead-{n}"
        await redis.hset(KEYS.task(task_id), mapping={"status": "failed", "error": "boom"})
        fields = {"type": "job", "task_id": task_id, "payload": "{}"}
        entry_id = await redis.xadd(KEYS.jobs("demo"), fields)
        entry = Entry(KEYS.jobs("demo"), entry_id, fields)
        errors = [ErrorRecord(at=now(), error="RuntimeError: boom", attempt=1)]
        ids.append(await dead_letter(redis, KEYS, GENERATOR_GROUP, entry, errors, "exhausted"))
    listed = json.loads((await run_cli(redis_url, "dlq", "list", "--json")).stdout)
    assert [row["id"] for row in listed] == ids and listed[0]["error"] == "RuntimeError: boom"
    shown = json.loads((await run_cli(redis_url, "dlq", "show", ids[0], "--json")).stdout)
    assert shown[0]["task_id"] == "dead-0" and shown[0]["errors"][0]["attempt"] == 1

    replayed = await run_cli(redis_url, "dlq", "replay", ids[0])
    assert replayed.returncode == 0 and "replayed" in replayed.stdout
    assert (await redis.hgetall(KEYS.task("dead-0")))["status"] == "queued"  # reopened for the retry
    rows = await redis.xrange(KEYS.jobs("demo"))
    assert rows[-1][1]["task_id"] == "dead-0" and "_history" in rows[-1][1]

    purged = await run_cli(redis_url, "dlq", "purge", ids[1])
    assert purged.returncode == 0 and await redis.xlen(KEYS.dlq) == 1
    rest = await run_cli(redis_url, "dlq", "replay", "--all", "--task", "demo")
    assert rest.returncode == 0 and await redis.xlen(KEYS.dlq) == 0
    assert (await run_cli(redis_url, "dlq", "show", ids[0])).returncode == 4
    assert await store.get("dead-2") is not None
