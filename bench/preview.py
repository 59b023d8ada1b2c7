"""What previews cost a job: denoising with `preview_every = N` against the same job without
previews on the same resident random model, in the same run (paired, interleaved runs).

    python bench/preview.py [--task ti2v-5B] [--size 256*256] [--frames 17] [--steps 20] [--every 5]

Time is process CPU time with one torch thread, from the start of denoising to its last step (the
VAE decode of the video itself is left out: previews cost denoise time). Goal: overhead < 2 % of
denoise time at the default N (10). On a GPU a transformer step of a real model is far heavier
than here while a one-frame VAE decode is not, so the share there is smaller still.
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

from bench.pipeline import MEDIUM
from wan.job import GenerationInput, StepInfo
from wan.model import WanModel
from wan.presets import PRESETS
from wan.tiny import make_tiny


def denoise_s(model: WanModel, inp: GenerationInput, every: int) -> tuple[float, int]:
    marks: list[float] = []
    previews = 0

    def on_step(info: StepInfo) -> None:
        nonlocal previews
        marks.append(time.process_time())
        previews += info.preview is not None

    started = time.process_time()
    model.generate(inp, on_step=on_step, preview_every=every)
    return marks[-1] - started, previews


def preview_cost(model: WanModel, inp: GenerationInput, calls: int = 10) -> float:
    """One preview alone: the decode and JPEG of a clean estimate of this job's latent shape."""
    from wan.preview import preview_jpeg

    pipe, spec = model._pipes["t2v"], model.spec
    latent_frames = (inp.frame_num - 1) // spec.vae_temporal + 1
    shape = (1, model.components.vae.config.z_dim, latent_frames, inp.height // spec.vae_spatial,
             inp.width // spec.vae_spatial)  # fmt: skip
    estimate = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(calls):
        started = time.process_time()
        preview_jpeg(pipe, model.components.vae, estimate)
        times.append(time.process_time() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="ti2v-5B", choices=["t2v-A14B", "ti2v-5B"])
    parser.add_argument("--size", default="256*256")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    width, height = (int(v) for v in args.size.split("*"))
    with tempfile.TemporaryDirectory() as tmp:
        make_tiny(tmp, args.task, dims=MEDIUM)
        model = WanModel.load(tmp, PRESETS[args.task])
        inp = GenerationInput.from_preset(
            model.preset, "a cat", size=(width, height), frame_num=args.frames, sample_steps=args.steps, seed=1
        )
        denoise_s(model, inp, args.every)  # warm-up
        base, with_previews, ratios, count = [], [], [], 0
        for i in range(args.repeats):
            if i % 2:  # alternate the order, so drift within a pair cancels
                (preview_s, count), (plain_s, _) = denoise_s(model, inp, args.every), denoise_s(model, inp, 0)
            else:
                (plain_s, _), (preview_s, count) = denoise_s(model, inp, 0), denoise_s(model, inp, args.every)
            base.append(plain_s)
            with_previews.append(preview_s)
            ratios.append(preview_s / plain_s)
        one_preview = preview_cost(model, inp)
    plain, previewed = statistics.median(base), statistics.median(with_previews)
    print(f"model: {args.task} random, {MEDIUM}, {width}*{height}x{args.frames}, {args.steps} steps")
    print("CPU time, 1 thread")
    print(f"  denoise without previews      {plain:8.2f} s")
    print(f"  with a preview every {args.every:<2} steps  {previewed:8.2f} s   ({count} previews)")
    paired = 100 * (statistics.median(ratios) - 1)
    print(f"  overhead, paired runs         {paired:+8.2f} % (median of {len(ratios)} pairs; noisy on a shared host)")
    direct = 100 * count * one_preview / plain
    print(f"  overhead, previews timed      {direct:+8.2f} % ({one_preview * 1e3:.0f} ms each); goal < 2 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
