"""One A14B denoising step on a GPU: achieved TFLOP/s and MFU.

    python bench/gpu_step.py [--blocks 4] [--size 832*480] [--frames 81] [--iters 5] [--backend auto]
                             [--options baseline,guidance1,compile,fp8,taylorseer,cfg2 | all]

Builds a WanTransformer3DModel with Wan2.2-A14B dimensions (40 heads x 128, FFN 13824, 16 latent
channels, 4096-d text) but only --blocks of its 40 blocks, in bf16 (the modules diffusers keeps in
fp32 stay fp32), at the 480P token count (832*480, 81 frames: 21 x 30 x 52 = 32,760 tokens) and
512 text tokens. A step is two forwards (classifier-free guidance), as in the pipeline. `auto`
tries the attention backends that are installed and keeps the fastest. The FLOP count is the
matmul work (projections, attention, FFN, text embedder); MFU divides by the card's dense bf16
peak. Needs CUDA; `--smoke-cpu` runs the same code with tiny sizes on the CPU to check it.

`--options` measures the speed options of docs/performance.md one at a time against `baseline`
(the step above), each on a fresh model: `guidance1` (guidance 1.0: one forward per step),
`compile` (regional torch.compile of the blocks, compile time excluded), `fp8` (torchao float8
weights and activations; reported as refused where the card or torchao cannot), `taylorseer`
(the step cache over --cache-steps steps, interval 2 after 2 full steps; its TFLOP/s and MFU are
effective: a full step's FLOPs over the measured time), `cfg2` (cfg_degree 2: the step on two GPUs,
one pass each and the swap of their predictions, `bench/gpu_cfg.py`; MFU per GPU; refused on a host
with one GPU). A LoRA is fused into the weights, so it
costs nothing per step and has no row.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the wan package, as for the other benches

A14B = dict(heads=40, head_dim=128, ffn=13824, channels=16, text_dim=4096, freq_dim=256)
TEXT_TOKENS = 512
OPTIONS = ("baseline", "guidance1", "compile", "fp8", "taylorseer", "cfg2")
BACKENDS = ("_flash_3", "flash", "_native_cudnn", "_native_flash", "native")
# Dense bf16 tensor-core peaks (TFLOP/s), by a substring of torch.cuda.get_device_name().
PEAKS = (("H200", 989.4), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H800", 989.4),
         ("B200", 2250.0), ("A100", 312.0), ("L40S", 362.0), ("A10G", 70.0))  # fmt: skip


@dataclass(frozen=True)
class Shape:
    heads: int
    head_dim: int
    ffn: int
    channels: int
    text_dim: int
    freq_dim: int
    blocks: int
    frames: int
    width: int
    height: int
    text_tokens: int = TEXT_TOKENS

    @property
    def dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def latent(self) -> tuple[int, int, int]:
        return (self.frames - 1) // 4 + 1, self.height // 8, self.width // 8

    @property
    def tokens(self) -> int:
        f, h, w = self.latent
        return f * (h // 2) * (w // 2)

    def forward_flops(self) -> float:
        n, m, d = self.tokens, self.text_tokens, self.dim
        block = (
            4 * 2 * n * d * d  # self-attention q, k, v, o
            + 4 * n * n * d  # QK^T and PV
            + 2 * 2 * n * d * d  # cross-attention q, o
            + 2 * 2 * m * d * d  # cross-attention k, v over the text
            + 4 * n * m * d  # cross-attention QK^T and PV
            + 2 * 2 * n * d * self.ffn  # FFN up and down
        )
        embed = 2 * m * (self.text_dim * d + d * d) + 2 * n * d * self.channels * 4 * 2  # text MLP, patchify, head
        return self.blocks * block + embed


def build(shape: Shape, device: torch.device, dtype: torch.dtype):
    from diffusers import WanTransformer3DModel

    with torch.device(device):
        model = WanTransformer3DModel(
            num_attention_heads=shape.heads,
            attention_head_dim=shape.head_dim,
            in_channels=shape.channels,
            out_channels=shape.channels,
            text_dim=shape.text_dim,
            freq_dim=shape.freq_dim,
            ffn_dim=shape.ffn,
            num_layers=shape.blocks,
        )
    # As a bf16 checkpoint loads: the modules diffusers keeps in fp32 (norms, time embedder) stay fp32.
    keep = set(model._keep_in_fp32_modules or ())
    for name, param in model.named_parameters():
        if not keep.intersection(name.split(".")):
            param.data = param.data.to(dtype)
    return model.eval().requires_grad_(False)


def inputs(shape: Shape, device: torch.device, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device).manual_seed(0)
    f, h, w = shape.latent
    return {
        "hidden_states": torch.randn(1, shape.channels, f, h, w, generator=gen, device=device, dtype=dtype),
        "timestep": torch.tensor([900.0], device=device),
        "encoder_hidden_states": torch.randn(
            1, shape.text_tokens, shape.text_dim, generator=gen, device=device, dtype=dtype
        ),
    }


def step_seconds(model, batch: dict[str, torch.Tensor], iters: int, device: torch.device, forwards: int = 2) -> float:
    """Median wall time of one CFG step (two forwards; one at guidance 1.0)."""
    times = []
    with torch.no_grad():
        for i in range(iters + 1):
            sync(device)
            started = time.perf_counter()
            for _ in range(forwards):
                model(**batch, return_dict=False)
            sync(device)
            if i:  # the first run is warm-up
                times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pick_backend(model, batch, requested: str, device: torch.device) -> tuple[str, float]:
    candidates = BACKENDS if requested == "auto" else (requested,)
    if device.type != "cuda":
        candidates = ("native",)
    best: tuple[str, float] | None = None
    for name in candidates:
        try:
            model.set_attention_backend(name)
            seconds = step_seconds(model, batch, 1, device)
        except Exception as exc:  # not installed or not supported on this card: try the next one
            print(f"  backend {name}: unavailable ({type(exc).__name__}: {str(exc)[:80]})")
            continue
        print(f"  backend {name}: {seconds:.3f} s/step")
        if best is None or seconds < best[1]:
            best = (name, seconds)
    if best is None:
        raise SystemExit("no attention backend ran")
    model.set_attention_backend(best[0])
    return best


def peak_tflops(device: torch.device, override: float | None) -> float | None:
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAKS if key in name), None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=4, help="transformer blocks (A14B has 40)")
    parser.add_argument("--size", default="832*480")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--backend", default="auto", help=f"auto or one of {BACKENDS}")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak, if not in the table")
    parser.add_argument("--smoke-cpu", action="store_true", help="tiny sizes on the CPU, to check the script")
    parser.add_argument("--options", default="", help=f"comma-separated of {', '.join(OPTIONS)}, or all")
    parser.add_argument("--cache-steps", type=int, default=8, help="steps per taylorseer measurement")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("*"))
    if args.smoke_cpu:
        device, dtype = torch.device("cpu"), torch.float32
        shape = Shape(heads=2, head_dim=24, ffn=64, channels=16, text_dim=32, freq_dim=32, blocks=1,
                      frames=5, width=64, height=64, text_tokens=16)  # fmt: skip
    elif not torch.cuda.is_available():
        print("bench/gpu_step.py needs a CUDA GPU and this host has none (torch.cuda.is_available() is False).")
        print("Run it where a GPU is available, or pass --smoke-cpu to check the script with tiny sizes.")
        return 2
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
        shape = Shape(**A14B, blocks=args.blocks, frames=args.frames, width=width, height=height)
    return run(shape, device, dtype, args)


def run(shape: Shape, device: torch.device, dtype: torch.dtype, args: argparse.Namespace) -> int:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}; torch {torch.__version__}; {dtype}")
    video = f"{shape.width}*{shape.height}x{shape.frames}"
    print(f"shape: {shape.blocks} blocks of dim {shape.dim} ({shape.heads}x{shape.head_dim}), ffn {shape.ffn}, "
          f"{video} -> {shape.tokens} tokens, {shape.text_tokens} text tokens")  # fmt: skip
    model = build(shape, device, dtype)
    batch = inputs(shape, device, dtype)
    backend, _ = pick_backend(model, batch, args.backend, device)
    seconds = step_seconds(model, batch, args.iters, device)
    tflops = 2 * shape.forward_flops() / seconds / 1e12
    print(f"attention backend: {backend}")
    print(f"step (2 forwards, CFG): {seconds * 1e3:.1f} ms  -> {tflops:.1f} TFLOP/s achieved")
    per_block = seconds / shape.blocks
    print(f"extrapolated A14B step (40 blocks): {per_block * 40:.2f} s; 40-step job: {per_block * 40 * 40:.0f} s")
    peak = peak_tflops(device, args.peak_tflops)
    print(f"MFU: {100 * tflops / peak:.1f}% of {peak:.0f} TFLOP/s" if peak else "MFU: unknown peak (--peak-tflops)")
    if args.options:
        from gpu_options import run_options

        del model
        run_options(shape, device, dtype, args, backend, peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
