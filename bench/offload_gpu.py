"""Peak GPU memory and s/step of the two A14B experts with `offload` none, experts and blocks.

    python bench/offload_gpu.py [--blocks 8] [--steps 40] [--size 832*480] [--frames 81]

Builds two WanTransformer3DModels with Wan2.2-A14B dimensions (40 heads x 128, FFN 13824) but only
--blocks of their 40 blocks, bf16, in host memory, and runs the sampling order of a t2v-A14B job
(shift 12, boundary 0.875: the high-noise expert, then the low-noise one; two forwards per step)
with both experts resident (`none`), through `wan.offload.ExpertOffloader` (`experts`) and through
`wan.blockoffload.BlockOffloader` (`blocks`, prefetch 1 and 2). Prints peak allocated memory, s/step
and its ratio to `none`, the time of each expert swap, and the peak scaled to 40 blocks (weights
grow with the block count, activations do not; `blocks` keeps 2 + prefetch blocks whatever the
count). Needs CUDA; `--smoke-cpu` runs the same code with tiny sizes on the CPU to check it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch

A14B = dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, in_channels=16, out_channels=16)
TINY = dict(num_attention_heads=2, attention_head_dim=12, ffn_dim=48, in_channels=16, out_channels=16)


def build_expert(dims: dict, blocks: int, text_dim: int, dtype: torch.dtype):
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(**dims, num_layers=blocks, text_dim=text_dim, freq_dim=256 if text_dim > 64 else 16)
    return model.to(dtype).requires_grad_(False).eval()


MODES = ("none", "experts", "blocks", "blocks2")  # blocks2: prefetch 2


def run(mode: str, args: argparse.Namespace, device: torch.device) -> dict:
    from wan.blockoffload import BlockOffloader
    from wan.loader import released_scheduler, scheduler_with_shift
    from wan.offload import ExpertOffloader

    dims, text_dim = (TINY, 16) if args.smoke_cpu else (A14B, 4096)
    dtype = torch.float32 if args.smoke_cpu else torch.bfloat16
    experts = {name: build_expert(dims, args.blocks, text_dim, dtype) for name in ("high_noise", "low_noise")}
    offloader = ExpertOffloader(experts, "experts", device) if mode == "experts" else None
    streamer = BlockOffloader(experts, device, 2 if mode == "blocks2" else 1) if mode.startswith("blocks") else None
    if mode == "none":
        for module in experts.values():
            module.to(device)
    scheduler = scheduler_with_shift(released_scheduler(), 12.0)
    scheduler.set_timesteps(args.steps)
    plan = [("high_noise" if float(t) >= 875 else "low_noise") for t in scheduler.timesteps for _ in range(2)]
    width, height = (int(v) for v in args.size.split("*"))
    latent = torch.randn(1, 16, (args.frames - 1) // 4 + 1, height // 8, width // 8, device=device, dtype=dtype)
    text = torch.randn(1, 512, text_dim, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    swaps: list[float] = []
    started_job = time.perf_counter()
    with torch.no_grad(), streamer.job(plan) if streamer else contextlib.nullcontext():
        for t in scheduler.timesteps:
            name = "high_noise" if float(t) >= 875 else "low_noise"
            if offloader is not None:
                moved, started = len(offloader.last.moves), time.perf_counter()
                offloader.activate(name)
                _sync(device)
                if len(offloader.last.moves) > moved:  # this step brought an expert in
                    swaps.append(time.perf_counter() - started)
            for _ in range(2):  # cond and uncond
                experts[name](hidden_states=latent, timestep=t.expand(1).to(device), encoder_hidden_states=text)
    _sync(device)
    step_s = (time.perf_counter() - started_job) / args.steps
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    if streamer is not None and device.type != "cuda":  # the CPU stand-in's own count of block copies
        peak = streamer.last.peak_bytes
    per_block = sum(p.numel() * p.element_size() for p in experts["high_noise"].blocks[0].parameters())
    misses = len(streamer.last.misses) if streamer else 0
    return {
        "peak_gib": peak / 2**30,
        "swap_s": swaps,
        "block_gib": per_block / 2**30,
        "step_s": step_s,
        "misses": misses,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--size", default="832*480")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--smoke-cpu", action="store_true")
    args = parser.parse_args()
    if args.smoke_cpu:
        args.blocks, args.steps, args.size, args.frames = 1, 4, "32*32", 5
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("needs CUDA (or --smoke-cpu)", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    base = None
    for mode in MODES:
        result = run(mode, args, device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        growth = {"none": 2, "experts": 1}.get(mode, 0)  # resident blocks grow with the count, streamed do not
        full = result["peak_gib"] + (40 - args.blocks) * result["block_gib"] * growth
        swaps = ", ".join(f"{s:.2f}" for s in result["swap_s"]) or "-"
        base = base or result["step_s"]
        print(
            f"offload={mode:8s} peak {result['peak_gib']:6.2f} GiB with {args.blocks} blocks, "
            f"~{full:6.1f} GiB at 40 blocks; {result['step_s']:.4f} s/step ({result['step_s'] / base:.2f}x none); "
            f"expert swaps (s): {swaps}; block misses: {result['misses']}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
