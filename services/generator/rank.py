"""One rank of a gang: a Ray actor holding its shard of the resident model.

Every rank runs the same denoising loop in lockstep. Rank 0 also publishes per-step progress
straight to Redis (not through the driver; see reporter.py), reads the cancel flag (the model's
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

from services.contracts import job_decoder
from services.generator.reporter import StepReporter
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
            speedups=served.speedups,
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
        if self.rank != 0:
            self.model.generate(inp)  # the model's all-reduce brings rank 0's cancel decision here
            return None
        assert self.redis is not None
        with StepReporter(self.redis, self.keys, job, attempt, worker, self.progress_maxlen) as reporter:
            started = time.perf_counter()
            frames = self.model.generate(inp, on_step=reporter.on_step, should_cancel=reporter.should_cancel)
        denoise_s = time.perf_counter() - started
        return {
            "video": encode_mp4(frames, job.fps),
            "poster": poster_image(frames, "jpeg"),
            "frames": int(frames.shape[0]),
            "denoise_s": denoise_s,
            "steps": reporter.steps,
        }
