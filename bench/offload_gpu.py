"""Peak GPU memory of the two A14B experts with and without `offload = "experts"`.

    python bench/offload_gpu.py [--blocks 8] [--steps 40] [--size 832*480] [--frames 81]

Builds two WanTransformer3DModels with Wan2.2-A14B dimensions (40 heads x 128, FFN 13824) but only
--blocks of their 40 blocks, bf16, in host memory, and runs the sampling order of a t2v-A14B job
(shift 12, boundary 0.875: the high-noise expert, then the low-noise one; two forwards per step)
through `wan.offload.ExpertOffloader`, once with both experts resident (`none`) and once with
`experts`. Prints peak allocated memory, the time of each swap, and the peak scaled to 40 blocks
(weights grow with the block count, activations do not). Needs CUDA; `--smoke-cpu` runs the same
code with tiny sizes on the CPU to check it.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

A14B = dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, in_channels=16, out_channels=16)
TINY = dict(num_attention_heads=2, attention_head_dim=12, ffn_dim=48, in_channels=16, out_channels=16)


def build_expert(dims: dict, blocks: int, text_dim: int, dtype: torch.dtype):
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(**dims, num_layers=blocks, text_dim=text_dim, freq_dim=256 if text_dim > 64 else 16)
    return model.to(dtype).requires_grad_(False).eval()


def run(mode: str, args: argparse.Namespace, device: torch.device) -> dict:
    from wan.loader import released_scheduler, scheduler_with_shift
    from wan.offload import ExpertOffloader

    dims, text_dim = (TINY, 16) if args.smoke_cpu else (A14B, 4096)
    dtype = torch.float32 if args.smoke_cpu else torch.bfloat16
    experts = {name: build_expert(dims, args.blocks, text_dim, dtype) for name in ("high_noise", "low_noise")}
    offloader = ExpertOffloader(experts, "experts", device) if mode == "experts" else None
    if offloader is None:
        for module in experts.values():
            module.to(device)
    scheduler = scheduler_with_shift(released_scheduler(), 12.0)
    scheduler.set_timesteps(args.steps)
    width, height = (int(v) for v in args.size.split("*"))
    latent = torch.randn(1, 16, (args.frames - 1) // 4 + 1, height // 8, width // 8, device=device, dtype=dtype)
    text = torch.randn(1, 512, text_dim, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    swaps: list[float] = []
    with torch.no_grad():
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
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    per_block = sum(p.numel() * p.element_size() for p in experts["high_noise"].blocks[0].parameters())
    return {"mode": mode, "peak_gib": peak / 2**30, "swap_s": swaps, "block_gib": per_block / 2**30}


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
    for mode in ("none", "experts"):
        result = run(mode, args, device)
        full = result["peak_gib"] + (40 - args.blocks) * result["block_gib"] * (2 if mode == "none" else 1)
        swaps = ", ".join(f"{s:.2f}" for s in result["swap_s"]) or "-"
        print(
            f"offload={mode:8s} peak {result['peak_gib']:.1f} GiB with {args.blocks} blocks, "
            f"~{full:.1f} GiB at 40 blocks; swaps (s): {swaps}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
