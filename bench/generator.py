"""Generator dispatch latency and progress overhead on an idle, ready gang (tiny model, CPU).

- dispatch gap: XADD of a job → its generate() call on rank 0 (and → its first step done);
- idle gap: `completed` of one job → generate() of the next, for back-to-back queued jobs;
- progress overhead: mean job run time with per-step progress on vs off, same jobs, same run;
- gang idle ÷ job time for back-to-back jobs whose uploads take --upload-delay s each (an S3
  endpoint that is slow on purpose): pipelined (`WAN22_JOBS_IN_FLIGHT=2`, the default: encoding
  and upload overlap the next job) against the sequential path (`1`), same jobs, same run.

    python bench/generator.py [--jobs 50] [--world-size 2] [--steps 8] [--idle-only]
                              [--idle-jobs 6] [--idle-steps 40] [--upload-delay 1.0]
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


def start_generator(
    env: dict[str, str], progress: bool, log: Path, **extra: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    settings = (
        env
        | extra
        | {
            "WAN22_METRICS_PORT": str(port),
            "WAN22_METRICS_HOST": "127.0.0.1",
            "WAN22_PROGRESS": "true" if progress else "false",
            "WAN22_LOG_LEVEL": "warning",
        }
    )
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


def gang_seconds(metrics_url: str) -> tuple[float, float]:
    """The generator's busy and hand-over seconds so far (its Prometheus counters)."""
    from prometheus_client.parser import text_string_to_metric_families

    busy = handover = 0.0
    for family in text_string_to_metric_families(httpx.get(metrics_url, timeout=5).text):
        for sample in family.samples:
            if sample.name == "wan22_gang_busy_seconds_total":
                busy += sample.value
            elif sample.name == "wan22_gang_handover_seconds_sum":
                handover += sample.value
    return busy, handover


def idle_fraction(spans: list[tuple[float, float]]) -> float:
    """Gang idle time between back-to-back jobs over the run: generate() start (first step's time
    less its elapsed) to the last step of each job, from rank 0's progress entries."""
    spans = sorted(spans)
    idle = sum(max(0.0, b[0] - a[1]) for a, b in itertools.pairwise(spans))
    return idle / (spans[-1][1] - spans[0][0])


async def _spans(redis, task_ids: list[str]) -> list[tuple[float, float]]:
    spans = []
    for task_id in task_ids:
        steps = [json.loads(f["payload"]) for _, f in await redis.xrange(KEYS.progress) if f["task_id"] == task_id]
        spans.append((steps[0]["ts"] - steps[0]["elapsed_s"], steps[-1]["ts"]))
    return spans


async def measure_idle(redis_url: str, env: dict[str, str], args: argparse.Namespace, log: Path) -> None:
    from tests.s3_server import S3Server

    s3 = S3Server(put_delay_s=args.upload_delay).start()
    s3.client().create_bucket(Bucket="bench")
    redis = connect(redis_url)
    storage = {"WAN22_STORAGE": "s3://bench/out", "WAN22_S3_ENDPOINT_URL": s3.url}
    figures = {}
    try:
        for in_flight in (1, 2):
            proc, ready = start_generator(env | storage, progress=True, log=log, WAN22_JOBS_IN_FLIGHT=str(in_flight))
            metrics_url = ready.replace("/readyz", "/metrics")
            try:
                await run_jobs(redis, [job(-3, 2)], spaced=True)  # warm-up
                before = gang_seconds(metrics_url)
                jobs = [job(i, args.idle_steps) for i in range(args.idle_jobs)]
                timings = await run_jobs(redis, jobs, spaced=False)
                spans = await _spans(redis, [j.task_id for j in jobs])
                busy, handover = (b - a for a, b in zip(before, gang_seconds(metrics_url), strict=True))
            finally:
                proc.terminate()
                proc.wait()
            denoise = statistics.mean(end - start for start, end in spans)
            wall = max(t["completed_at"] for t in timings) - min(start for start, _ in spans)
            figures[in_flight] = (idle_fraction(spans), handover / (busy + handover), denoise, wall)
    finally:
        await redis.aclose()
        s3.stop()
    print(f"back-to-back jobs, {args.idle_steps} steps, uploads of {args.upload_delay:g} s each:")
    for in_flight, name in ((1, "sequential (1 job in flight)"), (2, "pipelined (2 jobs in flight)")):
        idle, handover, denoise, wall = figures[in_flight]
        print(
            f"  {name:<29} gang idle ÷ job time {100 * idle:5.1f} %   hand-over {100 * handover:5.2f} %   "
            f"denoise {denoise:.2f} s/job   {args.idle_jobs} jobs in {wall:.1f} s"
        )
    print(
        "  (idle: last step to the next job's start, decode on rank 0 included; hand-over: decoded\n"
        "   frames to the next job's start, no rank working: wan22_gang_handover_seconds / busy + it)"
    )


async def measure(redis_url: str, env: dict[str, str], args: argparse.Namespace, log: Path) -> None:
    if not args.idle_only:
        await measure_latency(redis_url, env, args, log)
    await measure_idle(redis_url, env, args, log)


async def measure_latency(redis_url: str, env: dict[str, str], args: argparse.Namespace, log: Path) -> None:
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
    parser.add_argument("--idle-only", action="store_true", help="only the gang idle figures")
    parser.add_argument("--idle-jobs", type=int, default=6)
    parser.add_argument("--idle-steps", type=int, default=40)
    parser.add_argument("--upload-delay", type=float, default=1.0, help="seconds each upload takes")
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
