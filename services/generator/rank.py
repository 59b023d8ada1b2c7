"""One rank of a gang: a Ray actor holding its shard of the resident model.

Every rank runs the same denoising loop in lockstep. Rank 0 also publishes per-step progress
straight to Redis (not through the driver; see reporter.py), reads the cancel flag (the model's
all-reduce makes every rank stop at the same step) and encodes the mp4. It encodes on a thread of
its own after `run` has returned, so the gang can start the next job at once; the driver picks the
video up with `collect` (the actor takes concurrent calls).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import msgspec
import structlog

from services.contracts import JobLora, job_decoder
from services.generator.reporter import StepReporter
from services.keys import Keys
from services.models_config import AdapterLookup, LoraRegistry, ServedTask
from services.redisconn import connect_sync

log = structlog.get_logger("wan22.rank")

MAX_UNCOLLECTED = 4  # encodings a driver never collected (it died mid-job) are dropped beyond this


class RankWorker:
    def __init__(self, rank: int, world_size: int, redis_url: str, prefix: str, progress_maxlen: int) -> None:
        self.rank, self.world_size = rank, world_size
        self.keys, self.progress_maxlen = Keys(prefix), progress_maxlen
        self.redis = connect_sync(redis_url) if rank == 0 else None
        self.model: Any = None
        self.preview_every = 0
        self.adapters = AdapterLookup(LoraRegistry())
        self.device = "cpu"
        self._encoder = ThreadPoolExecutor(1, thread_name_prefix="encode") if rank == 0 else None
        self._encoded: dict[str, Future[dict[str, Any]]] = {}
        self._encoded_lock = threading.Lock()  # run and collect are called on different threads

    def identity(self) -> dict[str, Any]:
        """Where this rank runs: rank 0's address and a free port are the rendezvous point. The
        address is the IP Ray knows the node by (the one its other nodes reach it at), never a
        loopback or hostname guess."""
        import ray

        from wan.distributed import free_port

        return {
            "rank": self.rank,
            "host": ray.util.get_node_ip_address(),
            "port": free_port("0.0.0.0"),
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "node_id": ray.get_runtime_context().get_node_id(),
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
            cfg_degree=served.cfg_degree,
            fsdp=served.fsdp,
            text_encoder_on_cpu=served.text_encoder_on_cpu,
        )
        self.model = WanModel.load(
            served.ckpt_dir,
            served.preset,
            parallel=parallel,
            attention_backend=served.attention_backend,
            vae_tiling=served.vae_tiling,
            offload=served.offload,
            offload_prefetch=served.offload_prefetch,
            speedups=served.speedups,
            lora_switch=served.lora_registry.switch,
            lora_cache_bytes=served.lora_registry.cache_bytes,
        )
        self.model.noise = served.noise
        self.preview_every = served.preview_every if served.previews else 0
        self.adapters = AdapterLookup(served.lora_registry)
        return time.perf_counter() - started

    def _adapter(self, lora: JobLora) -> Any:
        """The registry's file for a job's adapter (never a path from the job)."""
        from wan.job import AdapterChoice

        entry = self.adapters.get(lora.name)
        if entry is None:
            raise ValueError(f"LoRA {lora.name!r} is not in this generator's registry")
        return AdapterChoice(name=lora.name, path=entry.path, scale=lora.scale, expert=lora.expert)

    def ping(self) -> int:
        return self.rank

    def warm_up(self, shape: str) -> float:
        """One short job at `shape` ("WIDTH*HEIGHTxFRAMES"), run by every rank at once before the
        gang reports ready (wan.warmup): no progress, no events, the frames dropped. Its seconds."""
        from wan.warmup import parse_shape, warm_up

        seconds, _ = warm_up(self.model, parse_shape(shape))
        return seconds

    def run(self, job_raw: bytes, image: Any, attempt: int, worker: str) -> dict[str, Any] | None:
        """One job on this rank. Rank 0 returns its timings and the key under which `collect` gives
        the encoded video and poster (encoding starts now, on another thread)."""
        from wan.model import GenerationInput

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
            loras=tuple(self._adapter(lora) for lora in job.loras),
        )
        if self.rank != 0:
            self.model.generate(inp)  # the model's all-reduce brings rank 0's cancel decision here
            return None
        assert self.redis is not None and self._encoder is not None
        with StepReporter(self.redis, self.keys, job, attempt, worker, self.progress_maxlen) as reporter:
            started, started_at = time.perf_counter(), time.time()
            frames = self.model.generate(
                inp, on_step=reporter.on_step, should_cancel=reporter.should_cancel, preview_every=self.preview_every
            )
        denoise_s = time.perf_counter() - started
        key = f"{job.task_id}:{attempt}"
        with self._encoded_lock:
            while len(self._encoded) >= MAX_UNCOLLECTED:
                self._encoded.pop(next(iter(self._encoded)))
            self._encoded[key] = self._encoder.submit(_encode, frames, job.fps)
        return {
            "collect": key,
            # What was made: an image job's size follows the image, not the job's width x height.
            "frame_num": int(frames.shape[0]),
            "height": int(frames.shape[1]),
            "width": int(frames.shape[2]),
            "fps": job.fps,
            "denoise_s": denoise_s,
            "gang_started_at": started_at,  # wall clock, for idle-time figures
            "gang_ended_at": started_at + denoise_s,
            "steps": reporter.steps,
        }

    def collect(self, key: str) -> dict[str, Any]:
        """The encoded video, poster and spritesheet of a job `run` finished (waits for its encoding)."""
        with self._encoded_lock:
            future = self._encoded.pop(key, None)
        if future is None:
            raise KeyError(f"no encoded video for {key} on this rank (the gang was rebuilt?)")
        return future.result()


def _encode(frames: Any, fps: int) -> dict[str, Any]:
    from wan.video import encode_mp4, poster_image, spritesheet_image

    started = time.perf_counter()
    video, poster, sheet = encode_mp4(frames, fps), poster_image(frames, "jpeg"), spritesheet_image(frames)
    return {"video": video, "poster": poster, "spritesheet": sheet, "encode_s": time.perf_counter() - started}
