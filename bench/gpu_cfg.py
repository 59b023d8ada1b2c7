"""The `cfg2` row of bench/gpu_step.py: one CFG step on two GPUs (cfg_degree 2, one rank per pass).

Each rank builds the same A14B-shaped transformer, and the step runs as diffusers' loop runs it:
the expert is called in the "cond" and then the "uncond" cache context, and `wan.cfgparallel`'s
hook makes each rank compute only its own pass and swap predictions with the other. Rank 0's
median step time comes back to the parent through a file. NCCL on GPUs, gloo for `--smoke-cpu`.
"""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_step, also in the spawned ranks

RANKS = 2


def cfg2_seconds(shape, device: torch.device, dtype: torch.dtype, iters: int, backend: str) -> float:
    from wan.distributed import spawn_local

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "seconds"
        payload = {"shape": asdict(shape), "cuda": device.type == "cuda", "dtype": str(dtype).split(".")[-1]}
        payload |= {"iters": iters, "backend": backend, "out": str(out)}
        spawn_local(f"{Path(__file__).resolve()}:rank_main", RANKS, payload, timeout_s=300)
        return float(out.read_text())


def rank_main(rank: int, world_size: int, port: int, payload: dict) -> None:
    import gpu_step as gs
    import torch.distributed as dist

    from wan.cfgparallel import split_passes
    from wan.distributed import destroy_group, init_group

    device = torch.device(f"cuda:{rank}" if payload["cuda"] else "cpu")
    init_group("127.0.0.1", port, rank, world_size, device=str(device))
    try:
        shape, dtype = gs.Shape(**payload["shape"]), getattr(torch, payload["dtype"])
        model = gs.build(shape, device, dtype)
        model.set_attention_backend(payload["backend"])
        split_passes(model, half=rank, pair=dist.group.WORLD)
        batch = gs.inputs(shape, device, dtype)
        seconds = _median_step(model, batch, payload["iters"], device)
        if rank == 0:
            Path(payload["out"]).write_text(repr(seconds))
    finally:
        destroy_group()


def _median_step(model, batch: dict[str, torch.Tensor], iters: int, device: torch.device) -> float:
    import gpu_step as gs
    import torch.distributed as dist

    times = []
    with torch.no_grad():
        for i in range(iters + 1):
            gs.sync(device)
            dist.barrier()
            started = time.perf_counter()
            for context in ("cond", "uncond"):  # as the pipeline calls the expert each step
                with model.cache_context(context):
                    model(**batch, return_dict=False)
            gs.sync(device)
            if i:  # the first run is warm-up
                times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]
