"""One rank of a gang: a Ray actor holding its shard of the resident model.

Every rank runs the same denoising loop in lockstep. Rank 0 also publishes per-step progress
straight to Redis (no round trip through the driver), reads the cancel flag (the model's
all-reduce makes every rank stop at the same step) and encodes the mp4.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import msgspec
import redis as redis_sync
import structlog

from services.contracts import Job, Progress, Started, encode, event_entry, job_decoder, now, state_to_hash
from services.keys import Keys
from services.models_config import ServedTask

log = structlog.get_logger("wan22.rank")


class RankWorker:
    def __init__(self, rank: int, world_size: int, redis_url: str, prefix: str, progress_maxlen: int) -> None:
        self.rank, self.world_size = rank, world_size
        self.keys, self.progress_maxlen = Keys(prefix), progress_maxlen
        self.redis = redis_sync.Redis.from_url(redis_url, decode_responses=True) if rank == 0 else None
        self.model: Any = None
        self.device = "cpu"

    def identity(self) -> dict[str, Any]:
        """Where this rank runs: rank 0's address and a free port are the rendezvous point."""
        import ray

        from wan.distributed import free_port

        host = ray.util.get_node_ip_address()
        return {
            "rank": self.rank,
            "host": host,
            "port": free_port("0.0.0.0"),
            "pid": os.getpid(),
            "node": socket.gethostname(),
        }

    def setup(self, master_addr: str, master_port: int, use_gpu: bool, timeout_s: float) -> str:
        """Join the gang's process group (NCCL on GPUs, gloo on CPUs)."""
        from wan.distributed import init_group

        # Ray sets CUDA_VISIBLE_DEVICES to this actor's GPU, so it is always device 0 here.
        self.device = "cuda:0" if use_gpu else "cpu"
        if self.world_size > 1:
            init_group(master_addr, master_port, self.rank, self.world_size, device=self.device, timeout_s=timeout_s)
        return self.device

    def load(self, served_raw: bytes) -> float:
        """Load the model once; it stays resident for every job this gang runs."""
        from wan.model import ParallelContext, WanModel

        served = msgspec.msgpack.decode(served_raw, type=ServedTask)
        started = time.perf_counter()
        parallel = ParallelContext(
            rank=self.rank,
            world_size=self.world_size,
            device=self.device,
            ulysses_degree=served.ulysses_degree,
            fsdp=served.fsdp,
            text_encoder_on_cpu=served.text_encoder_on_cpu,
        )
        self.model = WanModel.load(
            served.ckpt_dir,
            served.preset,
            parallel=parallel,
            attention_backend=served.attention_backend,
            vae_tiling=served.vae_tiling,
        )
        return time.perf_counter() - started

    def ping(self) -> int:
        return self.rank

    def run(self, job_raw: bytes, image: Any, attempt: int, worker: str) -> dict[str, Any] | None:
        """One job on this rank. Rank 0 returns the encoded video, poster and timings."""
        from wan.model import GenerationInput
        from wan.video import encode_mp4, poster_image

        job = job_decoder.decode(job_raw)
        low, high = job.guide_scale
        inp = GenerationInput(
            prompt=job.prompt,
            negative_prompt=job.negative_prompt,
            image=image,
            width=job.width,
            height=job.height,
            frame_num=job.frame_num,
            sample_steps=job.sample_steps,
            sample_shift=job.sample_shift,
            guide_scale=high,
            guide_scale_2=low,
            seed=job.seed,
        )
        reporter = _Reporter(self, job, attempt, worker) if self.rank == 0 else None
        started = time.perf_counter()
        frames = self.model.generate(
            inp,
            on_step=reporter.on_step if reporter else None,
            should_cancel=reporter.should_cancel if reporter else None,
        )
        if frames is None:
            return None
        denoise_s = time.perf_counter() - started
        return {
            "video": encode_mp4(frames, job.fps),
            "poster": poster_image(frames, "jpeg"),
            "frames": int(frames.shape[0]),
            "denoise_s": denoise_s,
            "steps": reporter.steps if reporter else 0,
        }


class _Reporter:
    """Rank 0's link to Redis during a job: progress every step, `started` at the first one, and
    the cancel flag. Progress is best-effort: a Redis hiccup must not fail the job."""

    def __init__(self, worker_actor: RankWorker, job: Job, attempt: int, worker: str) -> None:
        self.actor, self.job, self.attempt, self.worker = worker_actor, job, attempt, worker
        self.steps = 0
        keys = worker_actor.keys
        self.task_key, self.cancel_key, self.progress_key = (
            keys.task(job.task_id),
            keys.cancel(job.task_id),
            keys.progress,
        )

    def on_step(self, info: Any) -> None:
        self.steps = info.step
        progress = Progress(
            task_id=self.job.task_id,
            step=info.step,
            total=info.total,
            percent=round(100.0 * info.step / info.total, 2),
            expert=info.expert,
            elapsed_s=round(info.elapsed_s, 4),
            attempt=self.attempt,
            ts=now(),
        )
        # Only the fields a step changes: the rest of the hash belongs to ingest and the driver.
        fields = state_to_hash(
            {
                "status": "running",
                "progress": progress.percent,
                "step": info.step,
                "total": info.total,
                "expert": info.expert,
                "updated_at": progress.ts,
            }
        )
        assert self.actor.redis is not None
        try:
            pipe = self.actor.redis.pipeline(transaction=False)
            pipe.xadd(
                self.progress_key,
                {"type": "progress", "task_id": self.job.task_id, "payload": encode(progress)},
                maxlen=self.actor.progress_maxlen,
                approximate=True,
            )
            pipe.hset(self.task_key, mapping=fields)
            if info.step == 1:
                started = Started(task_id=self.job.task_id, attempt=self.attempt, worker=self.worker)
                pipe.xadd(self.actor.keys.events, event_entry(started))
            pipe.execute()
        except redis_sync.RedisError as exc:
            log.warning("progress.publish_failed", task_id=self.job.task_id, error=str(exc))

    def should_cancel(self) -> bool:
        assert self.actor.redis is not None
        try:
            return bool(self.actor.redis.exists(self.cancel_key))
        except redis_sync.RedisError:
            return False
