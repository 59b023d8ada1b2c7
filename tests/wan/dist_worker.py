"""One rank of the world-size-2 tests (run by `wan.distributed.spawn_local` in a fresh process).

Each scenario writes what this rank saw to `<out>/<scenario>.rank<R>.json` (and rank 0's frames to
`<out>/<scenario>.npy`) for the test to compare with a single-process run.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from tests.wan.support import tiny_input, tiny_preset
from wan.cli_generate import rank_main
from wan.distributed import destroy_group, init_group
from wan.job import GenerationInput
from wan.model import Cancelled, WanModel
from wan.speedups import Speedups, StepCacheSpec
from wan.uneven import gather_unequal


def run(rank: int, world_size: int, port: int, payload: dict) -> None:
    torch.set_num_threads(1)
    root, out = Path(payload["root"]), Path(payload["out"])
    ctx = init_group("127.0.0.1", port, rank, world_size)
    try:
        scenarios = [("t2v", "t2v-A14B", False), ("t2v_fsdp", "t2v-A14B", True), ("i2v", "i2v-A14B", False)]
        for name, task, fsdp in scenarios:
            ctx.fsdp = fsdp
            model = WanModel.load(root / task, tiny_preset(task), parallel=ctx)
            _save(out, name, rank, model.generate(tiny_input(task)), {})
        ctx.fsdp = False
        ti2v = WanModel.load(root / "ti2v-5B", tiny_preset("ti2v-5B"), parallel=ctx)
        # Rank 1 is handed a different prompt and seed: rank 0's input must win on every rank.
        inp = tiny_input("ti2v-5B") if rank == 0 else replace(tiny_input("ti2v-5B", seed=999), prompt="other")
        _save(out, "ti2v", rank, ti2v.generate(inp), {})
        cancel_seen_by_one_rank(model, out, rank, "i2v-A14B", asking=1)
        _block_offload(root, out, rank, ctx)
        _taylorseer(root, out, rank, ctx)
        _parallel_decode(root, out, rank, ctx)
    finally:
        destroy_group()
    # Then the `wan22 generate --world-size 2` rank code, with its own process group.
    rank_main(rank, world_size, payload["cli_port"], payload["cli_job"])


def _block_offload(root: Path, out: Path, rank: int, ctx) -> None:
    """Ulysses 2 with every rank streaming its blocks (wan.blockoffload)."""
    model = WanModel.load(root / "t2v-A14B", tiny_preset("t2v-A14B"), parallel=ctx, offload="blocks")
    frames = model.generate(tiny_input("t2v-A14B"))
    trace = model.offloader.last  # type: ignore[union-attr]
    _save(out, "t2v_blocks", rank, frames, {"misses": len(trace.misses), "uses": len(trace.uses)})


def _save(out: Path, name: str, rank: int, frames: np.ndarray | None, info: dict) -> None:
    if frames is not None:
        np.save(out / f"{name}.npy", frames)
    info["returned_frames"] = frames is not None
    (out / f"{name}.rank{rank}.json").write_text(json.dumps(info))


# Jobs whose token count (latent frames x latent height/2 x latent width/2) is odd, so 2 ranks
# cannot split it evenly: 3 x 3 x 3 = 27 tokens for the A14B models, 3 x 1 x 1 = 3 for ti2v-5B.
UNEVEN_JOBS: dict[str, tuple[str, dict]] = {
    "t2v": ("t2v-A14B", {"size": (48, 48), "frame_num": 9}),
    "i2v": ("i2v-A14B", {"size": (48, 48), "frame_num": 9}),  # the square image keeps 48*48
    "ti2v": ("ti2v-5B", {"size": (32, 32), "frame_num": 9}),
}


def uneven_input(name: str) -> GenerationInput:
    task, overrides = UNEVEN_JOBS[name]
    return tiny_input(task, **overrides)


def run_uneven(rank: int, world_size: int, port: int, payload: dict) -> None:
    """Each job of `UNEVEN_JOBS` on Ulysses over every rank, an even job on the same model, t2v's
    uneven job with FSDP, and a gather of unequal shards."""
    torch.set_num_threads(1)
    root, out = Path(payload["root"]), Path(payload["out"])
    ctx = init_group("127.0.0.1", port, rank, world_size)
    try:
        for name, (task, _) in UNEVEN_JOBS.items():
            model = WanModel.load(root / task, tiny_preset(task), parallel=ctx)
            with _shard_lengths(model) as lengths:
                frames = model.generate(uneven_input(name))
            _save(out, f"uneven_{name}", rank, frames, {"shard_tokens": sorted(set(lengths))})
        _save(out, "even_after_uneven", rank, model.generate(tiny_input("ti2v-5B")), {})
        ctx.fsdp = True  # parameters sharded as well: the uneven split is about tokens only
        fsdp = WanModel.load(root / "t2v-A14B", tiny_preset("t2v-A14B"), parallel=ctx)
        _save(out, "uneven_t2v_fsdp", rank, fsdp.generate(uneven_input("t2v")), {})
        _save(out, "gather", rank, None, {"gathered": _gather_unequal_shards(rank).tolist()})
    finally:
        destroy_group()


@contextlib.contextmanager
def _shard_lengths(model: WanModel) -> Iterator[list[int]]:
    """The token counts this rank's second block sees (the first one's input is split by diffusers)."""
    lengths: list[int] = []
    experts = [t for t in (model.components.transformer, model.components.transformer_2) if t is not None]
    hooks = [e.blocks[1].register_forward_pre_hook(lambda _, args: lengths.append(args[0].shape[1])) for e in experts]
    try:
        yield lengths
    finally:
        for hook in hooks:
            hook.remove()


def _gather_unequal_shards(rank: int) -> torch.Tensor:
    # Rank 0 holds tokens 0..2, rank 1 tokens 3..4 (two channels each).
    shard = torch.arange(10, dtype=torch.float32).view(1, 5, 2)[:, (0, 3)[rank] : (3, 5)[rank]]
    return gather_unequal(shard, 1, dist.group.WORLD)


def cancel_seen_by_one_rank(model: WanModel, out: Path, rank: int, task: str, asking: int) -> None:
    """Only rank `asking` asks to cancel (after its second step); the vote must stop every rank at
    the same step, before any decode."""
    steps: list[int] = []
    decodes: list[int] = []
    handle = model.components.vae.decoder.register_forward_pre_hook(lambda *_: decodes.append(1))
    should_cancel = (lambda: len(steps) >= 2) if rank == asking else (lambda: False)
    cancelled_at = None
    try:
        model.generate(tiny_input(task), on_step=lambda s: steps.append(s.step), should_cancel=should_cancel)
    except Cancelled as exc:
        cancelled_at = exc.step
    finally:
        handle.remove()
    _save(out, "cancel", rank, None, {"steps": steps, "cancelled_at": cancelled_at, "decodes": len(decodes)})


TAYLORSEER = Speedups(step_cache=StepCacheSpec(kind="taylorseer", interval=2, warmup_steps=2))


def _taylorseer(root: Path, out: Path, rank: int, ctx) -> None:
    # The step cache's fixed schedule: every rank skips the same steps, so no collective is missed.
    model = WanModel.load(root / "t2v-A14B", tiny_preset("t2v-A14B"), parallel=ctx, speedups=TAYLORSEER)
    _save(out, "t2v_taylorseer", rank, model.generate(tiny_input("t2v-A14B", sample_steps=8)), {})


SMALL_TILES = dict(
    tile_sample_min_height=32, tile_sample_min_width=32, tile_sample_stride_height=16, tile_sample_stride_width=16
)


def _parallel_decode(root: Path, out: Path, rank: int, ctx) -> None:
    # Every rank decodes its share of the VAE tiles; rank 0 blends them.
    model = WanModel.load(root / "t2v-A14B", tiny_preset("t2v-A14B"), parallel=ctx, speedups=PARALLEL_DECODE)
    model.components.vae.enable_tiling(**SMALL_TILES)
    decodes: list[int] = []
    handle = model.components.vae.decoder.register_forward_pre_hook(lambda *_: decodes.append(1))
    try:
        frames = model.generate(tiny_input("t2v-A14B", size=(64, 48)))
    finally:
        handle.remove()
    _save(out, "t2v_pdecode", rank, frames, {"decodes": len(decodes)})


PARALLEL_DECODE = Speedups(parallel_decode=True)
