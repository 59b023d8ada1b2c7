"""Step caching with diffusers' own cache hooks (`CacheMixin.enable_cache`) on each expert.

The hooks keep state per cache context ("cond" / "uncond", which the Wan pipelines open around
each pass), so each pass is compared with its own previous step. The state is reset before every
job, so a job never reuses a residual or a Taylor factor of the job before it (diffusers resets it
at the end of a call, which a cancelled job never reaches).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wan.speedups import StepCacheSpec


def cache_config(spec: StepCacheSpec, dtype: torch.dtype) -> Any:
    from diffusers import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if spec.kind == "first_block":
        return FirstBlockCacheConfig(threshold=spec.threshold)
    return TaylorSeerCacheConfig(
        cache_interval=spec.interval,
        disable_cache_before_step=spec.warmup_steps,
        max_order=spec.max_order,
        taylor_factors_dtype=dtype,
        # diffusers' default patterns end in "attn" and miss Wan's attn1 / attn2: name the modules.
        cache_identifiers=[r"blocks\.\d+\.(attn1|attn2|ffn)"],
    )


def enable_step_cache(experts: list[nn.Module], spec: StepCacheSpec) -> None:
    for expert in experts:
        expert.enable_cache(cache_config(spec, next(expert.parameters()).dtype))  # type: ignore[operator]


def reset_step_cache(experts: list[nn.Module]) -> None:
    for expert in experts:
        if getattr(expert, "is_cache_enabled", False):
            expert._reset_stateful_cache()  # type: ignore[operator]
