"""Generator dispatch latency and progress overhead on an idle, ready gang (tiny model, CPU).

- dispatch gap: XADD of a job → its generate() call on rank 0 (and → its first step done);
- idle gap: `completed` of one job → generate() of the next, for back-to-back queued jobs;
- progress overhead: mean job run time with per-step progress on vs off, same jobs, same run.

    python bench/generator.py [--jobs 50] [--world-size 2] [--steps 8]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import httpx  # noqa: E402

from services.contracts import Job, now  # noqa: E402
from services.keys import Keys  # noqa: E402
from services.redisconn import connect  # noqa: E402
from services.stack.ray_head import RayHead  # noqa: E402
from services.stack.redis_server import RedisServer, free_port  # noqa: E402
from services.tasks import TaskStore  # noqa: E402

KEYS = Keys()
MODELS = """[tasks.demo]
base = "ti2v-5B"
ckpt_dir = "{ckpt}"
world_size = {world}
sizes = ["64*64"]
frame_num = 5
sample_steps = {steps}
"""


def job(index: int, steps: int) -> Job:
    return Job(
        task_id=f"bench-{index}-{time.monotonic_ns()}",
        task="demo",
        prompt="a fox",
        width=64,
        height=64,
        frame_num=5,
        sample_steps=steps,
        sample_shift=5.0,
        guide_scale=(5.0, 5.0),
        seed=abs(index),
        fps=24,
        created_at=now(),
    )


def start_generator(env: dict[str, str], progress: bool, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    settings = env | {
        "WAN22_METRICS_PORT": str(port),
        "WAN22_METRICS_HOST": "127.0.0.1",
        "WAN22_PROGRESS": "true" if progress else "false",
        "WAN22_LOG_LEVEL": "warning",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "generator"],
        env=os.environ | settings,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/readyz"
    for _ in range(1200):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        time.sleep(0.25)
    raise RuntimeError("generator not ready")


async def run_jobs(redis, jobs: list[Job], spaced: bool) -> list[dict]:
    """Submit (one at a time when `spaced`, else all at once) and collect timings per job."""
    store, submitted = TaskStore(redis, KEYS), {}
    for item in jobs:
        submitted[item.task_id] = time.time()
        await store.accept(item, None, 60)
        if spaced:
            await _wait_terminal(redis, [item.task_id])
    await _wait_terminal(redis, [j.task_id for j in jobs])
    return [await _timings(redis, j.task_id, submitted[j.task_id]) for j in jobs]


async def _wait_terminal(redis, task_ids: list[str]) -> None:
    while True:
        states = [await redis.hget(KEYS.task(t), "status") for t in task_ids]
        if all(s in ("completed", "failed", "cancelled") for s in states):
            return
        await anyio.sleep(0.005)


async def _timings(redis, task_id: str, submitted: float) -> dict:
    events = {
        f["type"]: json.loads(f["payload"]) for _, f in await redis.xrange(KEYS.events) if f["task_id"] == task_id
    }
    steps = [json.loads(f["payload"]) for _, f in await redis.xrange(KEYS.progress) if f["task_id"] == task_id]
    first = steps[0] if steps else None
    return {
        "submitted": submitted,
        "generate_at": first["ts"] - first["elapsed_s"] if first else None,
        "first_step_at": first["ts"] if first else None,
        "completed_at": events["completed"]["ts"],
        "duration_s": events["completed"]["duration_s"],
    }


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return f"p50 {statistics.median(values) * 1000:7.1f} ms   p99 {p99 * 1000:7.1f} ms   (n={len(values)})"


async def measure(redis_url: str, env: dict[str, str], args: argparse.Namespace, log: Path) -> None:
    redis = connect(redis_url)
    proc, _ = start_generator(env, progress=True, log=log)
    try:
        await run_jobs(redis, [job(-1, args.steps)], spaced=True)  # warm-up
        spaced = await run_jobs(redis, [job(i, args.steps) for i in range(args.jobs)], spaced=True)
        burst = await run_jobs(redis, [job(i, args.steps) for i in range(args.jobs)], spaced=False)
    finally:
        proc.terminate()
        proc.wait()
    dispatch = [t["generate_at"] - t["submitted"] for t in spaced]
    first_step = [t["first_step_at"] - t["submitted"] for t in spaced]
    ordered = sorted(burst, key=lambda t: t["generate_at"])
    idle = [b["generate_at"] - a["completed_at"] for a, b in itertools.pairwise(ordered)]
    print(f"dispatch gap, XADD → generate() on rank 0:   {percentiles(dispatch)}")
    print(f"XADD → first denoising step done:            {percentiles(first_step)}")
    print(f"idle gap between back-to-back jobs:          {percentiles(idle)}")

    proc, _ = start_generator(env, progress=False, log=log)
    try:
        await run_jobs(redis, [job(-2, args.steps)], spaced=True)
        quiet = await run_jobs(redis, [job(i, args.steps) for i in range(args.jobs)], spaced=True)
    finally:
        proc.terminate()
        proc.wait()
    on = statistics.mean(t["duration_s"] for t in spaced)
    off = statistics.mean(t["duration_s"] for t in quiet)
    print(
        f"job run time ({args.steps} steps): progress on {on * 1000:.1f} ms, off {off * 1000:.1f} ms; "
        f"overhead {100 * (on - off) / off:+.2f} %"
    )
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--world-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wan22-bench-"))
    subprocess.run(
        [sys.executable, "-m", "services.cli.main", "models", "make-tiny", str(work / "demo"), "--task", "ti2v-5B"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    (work / "models.toml").write_text(MODELS.format(ckpt=work / "demo", world=args.world_size, steps=args.steps))
    server, ray = RedisServer().start(), RayHead(num_cpus=max(2, args.world_size)).start()
    env = {
        "WAN22_REDIS_URL": server.url,
        "WAN22_MODELS": str(work / "models.toml"),
        "WAN22_TASK": "demo",
        "WAN22_STORAGE": str(work / "outputs"),
        "RAY_ADDRESS": ray.address,
        "RAY_AUTH_MODE": "disabled",
    }
    try:
        anyio.run(measure, server.url, env, args, work / "generator.log")
    finally:
        ray.stop()
        server.close()


if __name__ == "__main__":
    main()
