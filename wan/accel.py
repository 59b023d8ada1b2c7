"""Applies a task's `Speedups` to the loaded experts: LoRA and FP8 before sharding (they rewrite
the weights), step caching and regional compile after it (they wrap the modules that run)."""

from __future__ import annotations

import structlog
import torch
from torch import nn

from wan.job import ParallelContext
from wan.loader import Components
from wan.speedups import Speedups

log = structlog.get_logger("wan22.model")


def experts_of(comps: Components) -> list[nn.Module]:
    return [t for t in (comps.transformer, comps.transformer_2) if t is not None]


def before_shard(comps: Components, speedups: Speedups, parallel: ParallelContext) -> None:
    experts = experts_of(comps)
    speedups.check(experts=len(experts), world_size=parallel.world_size)
    if speedups.fp8 and parallel.fsdp and parallel.world_size > 1:
        raise ValueError("fp8 with fsdp is not supported: FP8 experts are small enough to stay whole on each rank")
    if speedups.fp8:
        from wan.fp8 import fp8_unsupported

        reason = fp8_unsupported(torch.device(parallel.device))  # refuse before touching any weight
        if reason:
            raise ValueError(reason)
    if speedups.loras:
        from wan.lora import fuse_loras

        layers = fuse_loras(comps.transformer, comps.transformer_2, speedups.loras)
        log.info("lora.fused", loras=[lora.path for lora in speedups.loras], layers=layers)
    if speedups.fp8:
        from wan.fp8 import quantize_fp8

        quantize_fp8(experts, torch.device(parallel.device))


def after_shard(comps: Components, speedups: Speedups, device: torch.device) -> None:
    experts = experts_of(comps)
    if speedups.step_cache is not None:
        from wan.stepcache import enable_step_cache

        enable_step_cache(experts, speedups.step_cache)
    if speedups.compile_blocks:
        from wan.compile import compile_backend, compile_blocks

        # A cache hook decides inside the block's forward (a data-dependent branch): graph breaks allowed.
        compile_blocks(experts, fullgraph=speedups.step_cache is None, backend=compile_backend(device))


def before_job(comps: Components) -> None:
    from wan.cfgparallel import reset_passes
    from wan.stepcache import reset_step_cache

    reset_step_cache(experts_of(comps))
    reset_passes(experts_of(comps))
