"""What a per-request LoRA costs: per step and per switch, for both ways of switching
(wan.adapters), against base-only forwards of the same resident transformer in the same run.

    python bench/lora.py [--rank 32] [--tokens 2048] [--repeats 5]

A random WanTransformer3DModel of moderate size (dim 512, 4 blocks) runs forwards with
- no adapter (the baseline),
- `fuse`: the adapter fused into the weights (a step should cost the baseline's),
- `runtime`: forward hooks adding s * B(A x) on every adapted layer,
and the switches base -> A -> B -> base are timed for each. Times are process CPU time with one
torch thread, so neighbours on a shared host blur them less. The script ends with the same two
costs worked out for Wan2.2 A14B at 1280x720, 81 frames, on one H100 from the shapes, the FLOPs
and stated bandwidths (a prediction, not a measurement): which way costs least per job on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from tests.wan.lora_support import write_diffusers_lora
from wan.adapters import AdapterFiles, AdapterSwitcher
from wan.job import AdapterChoice
from wan.tiny import TEXT_DIM, TransformerDims, _transformer

DIMS = TransformerDims(heads=8, head_dim=64, ffn_dim=2048, layers=4)


def forward_s(model: torch.nn.Module, inputs: dict, repeats: int) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            started = time.process_time()
            model(**inputs, return_dict=False)
            times.append(time.process_time() - started)
    return statistics.median(times)


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.process_time()
    action()
    return time.process_time() - started


def inputs_for(tokens: int) -> dict:
    side = int((tokens // 2) ** 0.5)  # 2 latent frames of side x side patches (patch 1x2x2)
    gen = torch.Generator().manual_seed(0)
    return {
        "hidden_states": torch.randn(1, 16, 2, 2 * side, 2 * side, generator=gen),
        "timestep": torch.tensor([500.0]),
        "encoder_hidden_states": torch.randn(1, 64, TEXT_DIM, generator=gen),
    }


def measure(rank: int, tokens: int, repeats: int) -> dict[str, float]:
    model = _transformer(16, 16, DIMS)
    inputs = inputs_for(tokens)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [write_diffusers_lora(Path(tmp) / name, model, rank=rank, alpha=rank, seed=i) for i, name in
                 enumerate("ab")]  # fmt: skip
        # A small scale keeps activations in range: the random test adapters are large, and NaN or
        # denormal arithmetic would make a CPU step slow for reasons no real adapter has.
        a, b = (AdapterChoice(name, path, scale=0.01) for name, path in zip("ab", paths, strict=True))
        figures = {"base_step_s": forward_s(model, inputs, repeats)}
        for mode in ("fuse", "runtime"):
            switcher = AdapterSwitcher((model, None), mode, AdapterFiles(1 << 30))
            for path in paths:  # files read once, as a warm gang has them
                switcher.files.get(path)
            figures[f"{mode}_switch_first_s"] = timed(lambda s=switcher: s.switch((a,)))
            figures[f"{mode}_step_s"] = forward_s(model, inputs, repeats)
            figures[f"{mode}_switch_s"] = timed(lambda s=switcher: s.switch((b,)))
            figures[f"{mode}_to_base_s"] = timed(lambda s=switcher: s.switch(()))
            assert switcher.current == ()
        figures["base_again_step_s"] = forward_s(model, inputs, repeats)
    return figures


def gpu_prediction(rank: int) -> dict[str, float]:
    """A14B, 720p, 81 frames, 40 steps with CFG, one H100 (989 TFLOP/s bf16 dense at ~45 % MFU,
    3.35 TB/s HBM, ~25 GB/s host-to-device over PCIe 5 x16 pinned)."""
    tokens = 21 * 45 * 80  # latent frames x (720/16) x (1280/16)
    dim, ffn, text_dim, blocks = 5120, 13824, 4096, 40
    # (in, out) of every adapted linear of a block: self-attention q k v o, cross-attention q o
    # (k, v read the text), and the two FFN layers.
    linears = [(dim, dim)] * 6 + [(text_dim, dim)] * 2 + [(dim, ffn), (ffn, dim)]
    base_params = blocks * sum(i * o for i, o in linears)
    lora_params = blocks * sum(rank * (i + o) for i, o in linears)
    passes = 2 * 40  # CFG x steps
    flops_per_s = 989e12 * 0.45
    extra_flop_s = 2 * tokens * lora_params * passes / flops_per_s
    # Each hook reads its input again and reads and writes its output once more (bf16).
    extra_bytes = blocks * sum(2 * tokens * (i + 2 * o) for i, o in linears) * passes
    runtime_job_s = extra_flop_s + extra_bytes / 3.35e12
    base_job_s = 2 * tokens * base_params * passes / flops_per_s
    weights_bytes = 2 * base_params * 2  # both experts, bf16
    fuse_switch_s = weights_bytes / 25e9 + 2 * weights_bytes / 3.35e12  # restore from host, fuse in place
    return {
        "base_denoise_s": base_job_s,
        "runtime_extra_per_job_s": runtime_job_s,
        "fuse_switch_s": fuse_switch_s,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    f = measure(args.rank, args.tokens, args.repeats)
    base = f["base_step_s"]
    print(f"transformer dim {DIMS.heads * DIMS.head_dim}, {DIMS.layers} blocks, {args.tokens} tokens, LoRA rank "
          f"{args.rank} on every block linear; CPU time, 1 thread")  # fmt: skip
    print(f"  base step                {base * 1e3:9.1f} ms   (again after both modes: "
          f"{f['base_again_step_s'] * 1e3:.1f} ms)")  # fmt: skip
    for mode in ("fuse", "runtime"):
        step = f[f"{mode}_step_s"]
        print(f"  {mode:<8} step            {step * 1e3:9.1f} ms   ratio {step / base:.3f}")
        print(f"  {mode:<8} switch base->A  {f[f'{mode}_switch_first_s'] * 1e3:9.1f} ms   "
              f"A->B {f[f'{mode}_switch_s'] * 1e3:.1f} ms   B->base {f[f'{mode}_to_base_s'] * 1e3:.1f} ms   "
              f"(A->B = {f[f'{mode}_switch_s'] / base:.2f} base steps)")  # fmt: skip
    gpu = gpu_prediction(args.rank)
    print(f"predicted on one H100, A14B 1280x720x81, 40 steps with CFG, rank {args.rank} on every block linear:")
    print(f"  base denoise              {gpu['base_denoise_s']:8.0f} s")
    print(f"  runtime: extra per job    {gpu['runtime_extra_per_job_s']:8.1f} s "
          f"({100 * gpu['runtime_extra_per_job_s'] / gpu['base_denoise_s']:.1f} %)")  # fmt: skip
    print(f"  fuse: per switch          {gpu['fuse_switch_s']:8.1f} s (restore both experts from pinned host, fuse)")
    cheaper = "fuse" if gpu["fuse_switch_s"] < gpu["runtime_extra_per_job_s"] else "runtime"
    print(f"  cheaper per job even when every job switches: {cheaper}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
