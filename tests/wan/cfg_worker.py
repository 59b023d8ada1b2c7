"""One rank of the CFG-parallel tests (tests/wan/test_cfg_parallel.py), run by `wan.distributed.spawn_local`.

The gang has cfg_degree 2: ranks [0, k) run the conditional pass, [k, 2k) the unconditional one,
each half Ulysses over its k ranks (k = 1 at world size 2, 2 at world size 4). Results go to
`<out>/<case>.rank<R>.json` and rank 0's frames to `<out>/<case>.npy`, as in dist_worker.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from tests.wan.dist_worker import TAYLORSEER, _save, _shard_lengths, cancel_seen_by_one_rank, uneven_input
from tests.wan.support import TASKS, tiny_input, tiny_preset
from wan.cli_generate import rank_main
from wan.distributed import destroy_group, init_group
from wan.job import ParallelContext
from wan.model import WanModel

# The two experts at different guidance (Wan's order: low-noise, high-noise).
GUIDANCE = [2.0, 5.0]
# Guidance 1.0 for one expert: a single pass, which cfg_degree 2 refuses.
SINGLE_PASS = {"t2v-A14B": [3.0, 1.0], "ti2v-5B": 1.0}


def run_two(rank: int, world_size: int, port: int, payload: dict) -> None:
    """World size 2 = cfg 2 x 1: each task, the guidance-1.0 refusal, then `wan22 generate --cfg-degree 2`."""
    root, out, ctx = _start(rank, world_size, port, payload)
    try:
        for task in TASKS:
            model = _load(root, task, ctx)
            if task in SINGLE_PASS:
                _refusal(model, task, out, rank)  # refused on every rank; the next job still runs
            _save(out, task, rank, model.generate(tiny_input(task)), {})
        # Block offload with one pass per rank per step: the plan foresees every forward.
        blocks = WanModel.load(root / "t2v-A14B", tiny_preset("t2v-A14B"), parallel=ctx, offload="blocks")
        frames = blocks.generate(tiny_input("t2v-A14B"))
        _save(out, "t2v_blocks", rank, frames, {"misses": len(blocks.offloader.last.misses)})  # type: ignore[union-attr]
    finally:
        destroy_group()
    rank_main(rank, world_size, payload["cli_port"], payload["cli_job"])


def run_four(rank: int, world_size: int, port: int, payload: dict) -> None:
    """World size 4 = cfg 2 x Ulysses 2: each task, FSDP, experts at different guidance, an odd
    token count, the TaylorSeer step cache, and a cancel seen by one rank of the unconditional half."""
    root, out, ctx = _start(rank, world_size, port, payload)
    try:
        for task in TASKS:
            model = _load(root, task, ctx)
            _save(out, task, rank, model.generate(tiny_input(task)), {})
        t2v = _load(root, "t2v-A14B", ctx)
        with _text_seen(t2v) as seen:
            frames = t2v.generate(tiny_input("t2v-A14B", guide_scale=GUIDANCE))
        _save(out, "guidance", rank, frames, {"text_seen": seen})
        with _shard_lengths(t2v) as lengths:
            frames = t2v.generate(uneven_input("t2v"))
        _save(out, "uneven_t2v", rank, frames, {"shard_tokens": sorted(set(lengths))})
        # The last rank (of the unconditional half) asks.
        cancel_seen_by_one_rank(t2v, out, rank, "t2v-A14B", asking=world_size - 1)
        cached = _load(root, "t2v-A14B", ctx, speedups=TAYLORSEER)
        _save(out, "taylorseer", rank, cached.generate(tiny_input("t2v-A14B", sample_steps=8)), {})
        ctx.fsdp = True
        fsdp = _load(root, "t2v-A14B", ctx)
        _save(out, "t2v_fsdp", rank, fsdp.generate(tiny_input("t2v-A14B")), {})
    finally:
        destroy_group()


def _start(rank: int, world_size: int, port: int, payload: dict) -> tuple[Path, Path, ParallelContext]:
    torch.set_num_threads(1)
    ctx = init_group("127.0.0.1", port, rank, world_size)
    ctx.cfg_degree = 2
    return Path(payload["root"]), Path(payload["out"]), ctx


def _load(root: Path, task: str, ctx: ParallelContext, **kwargs: object) -> WanModel:
    return WanModel.load(root / task, tiny_preset(task), parallel=ctx, **kwargs)  # type: ignore[arg-type]


def _refusal(model: WanModel, task: str, out: Path, rank: int) -> None:
    try:
        model.generate(tiny_input(task, guide_scale=SINGLE_PASS[task]))
        error = None
    except ValueError as exc:
        error = str(exc)
    _save(out, f"refused_{task}", rank, None, {"error": error})


@contextlib.contextmanager
def _text_seen(model: WanModel) -> Iterator[dict[str, list[float]]]:
    """Per expert, a checksum of the text embedding each forward of this rank ran with: the prompt's
    in the conditional pass, the negative prompt's in the unconditional one."""
    seen: dict[str, list[float]] = {"high_noise": [], "low_noise": []}
    experts = {"high_noise": model.components.transformer, "low_noise": model.components.transformer_2}

    def recorder(name: str):
        return lambda _, args: seen[name].append(float(args[1].double().sum()))

    hooks = [e.blocks[0].register_forward_pre_hook(recorder(name)) for name, e in experts.items()]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()
