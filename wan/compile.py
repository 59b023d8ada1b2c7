"""Regional torch.compile: diffusers' `compile_repeated_blocks` compiles the transformer block
class once (every block of both experts shares the compiled code; parameters are inputs, not
guards), so compiling costs one block's worth instead of the whole model's. A job of another size
recompiles once with dynamic shapes; a job of a size seen before never does. The first job at each
size pays the compile unless the task warms that size up before it reports ready (`warmup`,
wan.warmup)."""

from __future__ import annotations

import torch
from torch import nn


def compile_backend(device: torch.device) -> str:
    """inductor on GPUs. On a CPU (tests, the demo) dynamo and AOTAutograd alone (`aot_eager`):
    the same graphs, guards and recompiles, without inductor's C++ builds (about a minute per
    shape on a small host) for a device nobody serves video from."""
    return "inductor" if device.type == "cuda" else "aot_eager"


def compile_blocks(experts: list[nn.Module], *, fullgraph: bool = True, backend: str = "inductor") -> None:
    for expert in experts:
        expert.compile_repeated_blocks(fullgraph=fullgraph, backend=backend)  # type: ignore[operator]
