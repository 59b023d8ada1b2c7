"""Regional torch.compile: diffusers' `compile_repeated_blocks` compiles the transformer block
class once (every block of both experts shares the compiled code; parameters are inputs, not
guards), so compiling costs one block's worth instead of the whole model's and the first job pays
it. A job of another size recompiles once with dynamic shapes; a job of a size seen before never
does."""

from __future__ import annotations

from torch import nn


def compile_blocks(experts: list[nn.Module], *, fullgraph: bool = True, backend: str = "inductor") -> None:
    for expert in experts:
        expert.compile_repeated_blocks(fullgraph=fullgraph, backend=backend)  # type: ignore[operator]
