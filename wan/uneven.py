"""Sequence parallel for jobs whose token count does not divide by the Ulysses ranks.

diffusers' "Ulysses anything" mode cuts the token sequence with `tensor_split` (shards differ by at
most one token) and its all-to-alls exchange the unequal shards, so attention runs over exactly
the real tokens: nothing is padded, nothing is masked, any attention backend still works. Two
pieces are ours: the mode is on only for the jobs that need it (it exchanges shard sizes on every
attention call), and the final gather of the transformer's output, which pads the shards to one
length because diffusers' gather of unequal shards works on NCCL but not on gloo.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

OUTPUT = "proj_out"  # the module whose output diffusers' Wan plan gathers (tokens on dim 1)
TOKEN_DIM = 1


def splits_unevenly(tokens: int, ranks: int) -> bool:
    """True for a job whose token sequence cannot be cut into equal shards over `ranks`."""
    return ranks > 1 and tokens % ranks != 0


@contextlib.contextmanager
def uneven_split(models: Iterable[nn.Module], enabled: bool) -> Iterator[None]:
    """Run one job in "Ulysses anything" mode on `models` (context-parallel experts) when `enabled`.
    The caller makes sure the layout is Ulysses only: diffusers has no such mode for ring x Ulysses."""
    configs = [m._parallel_config.context_parallel_config for m in models] if enabled else []
    for config in configs:
        config.ulysses_anything = True  # read by the split hooks and by attention on every call
    try:
        yield
    finally:
        for config in configs:
            config.ulysses_anything = False


def plan_without_output_gather(plan: dict[str, Any]) -> dict[str, Any]:
    """The model's context-parallel plan less its output gather, which `OutputGather` replaces."""
    gather = plan.get(OUTPUT)
    if getattr(gather, "gather_dim", None) != TOKEN_DIM:
        raise RuntimeError(f"expected the context-parallel plan to gather {OUTPUT!r} on dim {TOKEN_DIM}, got {gather}")
    return {name: entry for name, entry in plan.items() if name != OUTPUT}


class OutputGather:
    """Forward hook on the output projection: every rank's token shard, gathered in rank order."""

    def __init__(self, config: Any) -> None:
        self.config = config  # diffusers' ContextParallelConfig, set up by `enable_parallelism`

    def __call__(self, module: nn.Module, args: object, output: torch.Tensor) -> torch.Tensor:
        group = self.config._flattened_mesh.get_group()
        if self.config.ulysses_anything:
            return gather_unequal(output, TOKEN_DIM, group)
        return gather_equal(output, TOKEN_DIM, group)


def gather_equal(x: torch.Tensor, dim: int, group: dist.ProcessGroup) -> torch.Tensor:
    """Concatenate every rank's `x` along `dim`, all of one shape (what diffusers' own gather does)."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=dim)


def gather_unequal(x: torch.Tensor, dim: int, group: dist.ProcessGroup) -> torch.Tensor:
    """Concatenate every rank's `x` along `dim` where the ranks' lengths differ: each shard is
    zero-padded to the longest, gathered, and cut back to its own length."""
    lengths = _lengths(x.shape[dim], x.device, group)
    longest = max(lengths)
    parts = gather_equal(pad_to(x, dim, longest), dim, group).split(longest, dim=dim)
    return torch.cat([part.narrow(dim, 0, n) for part, n in zip(parts, lengths, strict=True)], dim=dim)


def pad_to(x: torch.Tensor, dim: int, length: int) -> torch.Tensor:
    """`x` with zeros appended along `dim` up to `length`."""
    missing = length - x.shape[dim]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[dim] = missing
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def _lengths(length: int, device: torch.device, group: dist.ProcessGroup) -> list[int]:
    # gloo moves only CPU tensors, NCCL only accelerator ones.
    on = torch.device("cpu") if dist.get_backend(group) == "gloo" else device
    mine = torch.tensor([length], dtype=torch.int64, device=on)
    every = [torch.empty_like(mine) for _ in range(dist.get_world_size(group))]
    dist.all_gather(every, mine, group=group)
    return [int(n.item()) for n in every]
