"""Sharding a loaded Wan2.2 model over the caller's process group.

Sequence parallelism is diffusers' context parallelism (Ulysses, optionally ring); parameter
sharding is FSDP2 `fully_shard` per block. Every rank runs the same code in lockstep, so all
checks here raise the same error on every rank before any collective starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from wan.job import ParallelContext
from wan.uneven import OUTPUT, OutputGather, plan_without_output_gather


@dataclass(frozen=True)
class Degrees:
    ulysses: int
    ring: int

    @property
    def total(self) -> int:
        return self.ulysses * self.ring


def degrees(ctx: ParallelContext, heads: int, attention_backend: str | None) -> Degrees:
    """Ulysses and ring degrees for `ctx`, or a ValueError saying why the layout cannot work."""
    ulysses = ctx.ulysses_degree or ctx.world_size
    if ulysses < 1 or ctx.world_size % ulysses:
        raise ValueError(f"ulysses_degree {ulysses} must divide the world size {ctx.world_size}")
    if heads % ulysses:
        raise ValueError(f"Ulysses degree {ulysses} must divide the transformer's {heads} attention heads")
    ring = ctx.world_size // ulysses
    if ring > 1 and (attention_backend or "native") == "native":
        raise ValueError(
            f"ring attention over {ring} ranks needs an attention backend that returns the log-sum-exp "
            "(e.g. 'flash', '_native_cudnn', 'sage'); 'native' supports Ulysses only"
        )
    return Degrees(ulysses=ulysses, ring=ring)


def check_tokens(tokens: int, deg: Degrees) -> None:
    """Refuse what ring attention cannot split: its shards must be equal. Ulysses alone takes any
    token count (`wan.uneven`)."""
    if deg.ring > 1 and tokens % deg.total:
        raise ValueError(
            f"the video has {tokens} transformer tokens (latent frames x latent height/2 x latent width/2), "
            f"which does not divide by the {deg.total} sequence-parallel ranks; ring attention needs equal "
            "shards: pick another size or frame count, or run Ulysses only (ulysses_degree = world size)"
        )


@contextlib.contextmanager
def _accelerator_count_at_least_one() -> Iterator[None]:
    """diffusers computes `rank % torch.accelerator.device_count()`, which divides by zero on a host
    with no accelerator. The device it derives is unused on CPU; report one device for the call only."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1
    try:
        yield
    finally:
        torch.accelerator.device_count = original


def enable_context_parallel(model: nn.Module, deg: Degrees, device: torch.device) -> None:
    from diffusers import ContextParallelConfig
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (deg.ring, deg.ulysses), mesh_dim_names=("ring", "ulysses"))
    config = ContextParallelConfig(
        ring_degree=deg.ring if deg.ring > 1 else None,
        ulysses_degree=deg.ulysses if deg.ulysses > 1 else None,
        mesh=mesh,
    )
    with _accelerator_count_at_least_one():
        model.enable_parallelism(config=config, cp_plan=plan_without_output_gather(model._cp_plan))
    # Our gather, not diffusers': it also takes the unequal shards of an uneven job over gloo.
    model.get_submodule(OUTPUT).register_forward_hook(OutputGather(model._parallel_config.context_parallel_config))


def shard_fsdp(model: nn.Module, blocks: nn.ModuleList, device: torch.device) -> None:
    """FSDP2: each block is its own unit (gathered just before use), the rest belongs to the root."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def all_agree(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is true on any rank (a cancel seen by one rank stops all)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_comm_device(device))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_object(obj: object, device: torch.device) -> object:
    """Rank 0's `obj` on every rank."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device(device))
    return box[0]


def _comm_device(device: torch.device) -> torch.device:
    # NCCL moves only accelerator tensors; gloo only CPU ones.
    return device if dist.get_backend() == "nccl" else torch.device("cpu")
