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
from torch.distributed.device_mesh import DeviceMesh

from wan.job import ParallelContext
from wan.uneven import OUTPUT, OutputGather, plan_without_output_gather


@dataclass(frozen=True)
class Degrees:
    ulysses: int
    ring: int
    cfg: int = 1  # 2: each half of the gang runs one pass of classifier-free guidance (wan.cfgparallel)

    @property
    def total(self) -> int:
        """The ranks one pass's token sequence is split over (all of the gang, or half of it)."""
        return self.ulysses * self.ring


CFG_DEGREES = (1, 2)  # classifier-free guidance has two passes


def degrees(ctx: ParallelContext, heads: int, attention_backend: str | None) -> Degrees:
    """CFG, Ulysses and ring degrees for `ctx`, or a ValueError saying why the layout cannot work."""
    cfg, per_pass = ctx.cfg_degree, ranks_per_pass(ctx)
    ulysses = ctx.ulysses_degree or per_pass
    if ulysses < 1 or per_pass % ulysses:
        raise ValueError(
            f"ulysses_degree {ulysses} must divide the world size {ctx.world_size}"
            + (f" / cfg_degree {cfg} = {per_pass} ranks per pass" if cfg > 1 else "")
        )
    if heads % ulysses:
        raise ValueError(f"Ulysses degree {ulysses} must divide the transformer's {heads} attention heads")
    ring = per_pass // ulysses
    if ring > 1 and (attention_backend or "native") == "native":
        raise ValueError(
            f"ring attention over {ring} ranks needs an attention backend that returns the log-sum-exp "
            "(e.g. 'flash', '_native_cudnn', 'sage'); 'native' supports Ulysses only"
        )
    return Degrees(ulysses=ulysses, ring=ring, cfg=cfg)


def ranks_per_pass(ctx: ParallelContext) -> int:
    """world_size / cfg_degree, or a ValueError when cfg_degree is not a layout of the gang."""
    if ctx.cfg_degree not in CFG_DEGREES or ctx.world_size % ctx.cfg_degree:
        raise ValueError(f"cfg_degree {ctx.cfg_degree} must be 1 or 2 and divide the world size {ctx.world_size}")
    return ctx.world_size // ctx.cfg_degree


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


def gang_mesh(deg: Degrees, device: torch.device) -> DeviceMesh:
    """The gang as a (cfg, ring, ulysses) mesh, ulysses innermost: with k = ring x ulysses ranks per
    pass, ranks [0, k) are the first half. Each half's ("ring", "ulysses") submesh shards its pass;
    mesh["cfg"] pairs rank i with rank i + k."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (deg.cfg, deg.ring, deg.ulysses), mesh_dim_names=("cfg", "ring", "ulysses"))


def enable_context_parallel(model: nn.Module, mesh: DeviceMesh, deg: Degrees) -> None:
    """diffusers' context parallelism over this rank's half of `mesh` (all of it without CFG parallelism)."""
    from diffusers import ContextParallelConfig

    config = ContextParallelConfig(
        ring_degree=deg.ring if deg.ring > 1 else None,
        ulysses_degree=deg.ulysses if deg.ulysses > 1 else None,
        mesh=mesh["ring", "ulysses"],
    )
    with _accelerator_count_at_least_one():
        model.enable_parallelism(config=config, cp_plan=plan_without_output_gather(model._cp_plan))
    # Our gather, not diffusers': it also takes the unequal shards of an uneven job over gloo.
    model.get_submodule(OUTPUT).register_forward_hook(OutputGather(model._parallel_config.context_parallel_config))


def pass_mesh(mesh: DeviceMesh) -> DeviceMesh:
    """This rank's half of `mesh` as one dimension: the ranks that run the same pass."""
    return mesh["ring", "ulysses"]._flatten("pass")


def world_mesh(device: torch.device) -> DeviceMesh:
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (dist.get_world_size(),))


def shard_fsdp(model: nn.Module, blocks: nn.ModuleList, mesh: DeviceMesh) -> None:
    """FSDP2 over `mesh`: each block is its own unit (gathered just before use), the rest belongs to the root."""
    from torch.distributed.fsdp import fully_shard

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
