"""Seconds per denoising step: the project's `WanModel.generate` against a plain diffusers
`WanPipeline` call on the same resident random model, in the same run.

    python bench/pipeline.py [--task t2v-A14B] [--size 128*128] [--frames 9] [--steps 10] [--repeats 8]

A step's time is the gap between consecutive step ends (the project's `on_step`; a bare timestamp
callback on the diffusers side), so text encoding and the VAE decode do not blur it. Times are
process CPU time with one torch thread, since on a shared host wall time mostly measures the
neighbours. Runs of the two pipelines are paired and interleaved; the ratio is the median of the
per-pair ratios. On a busy host that ratio still wanders by a few percent either way, so the
script also times the project's per-step hook alone.
Target: ratio (project / diffusers) <= 1.02.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from wan.job import GenerationInput
from wan.loader import scheduler_with_shift
from wan.model import WanModel
from wan.presets import PRESETS
from wan.tiny import TransformerDims, make_tiny

MEDIUM = TransformerDims(heads=8, head_dim=48, ffn_dim=1536, layers=4)


def plain_pipeline(model: WanModel):
    """diffusers' own pipeline class over the very same modules."""
    from diffusers import WanPipeline

    c = model.components
    pipe = WanPipeline(
        tokenizer=c.tokenizer,
        text_encoder=c.text_encoder,
        vae=c.vae,
        scheduler=c.scheduler,
        transformer=c.transformer,
        transformer_2=c.transformer_2,
        boundary_ratio=model.preset.boundary_ratio,
        expand_timesteps=model.preset.kind == "ti2v",
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def project_steps(model: WanModel, inp: GenerationInput) -> list[float]:
    marks: list[float] = []
    model.generate(inp, on_step=lambda info: marks.append(time.process_time()), should_cancel=lambda: False)
    return gaps(marks)


def plain_steps(pipe, model: WanModel, inp: GenerationInput) -> list[float]:
    marks: list[float] = []

    def mark(pipe, i, t, kwargs):
        marks.append(time.process_time())
        return {}

    pipe.scheduler = scheduler_with_shift(model.components.scheduler, inp.sample_shift)
    pipe(
        prompt=inp.prompt,
        negative_prompt=inp.negative_prompt,
        height=inp.height,
        width=inp.width,
        num_frames=inp.frame_num,
        num_inference_steps=inp.sample_steps,
        guidance_scale=inp.guide_scale,
        guidance_scale_2=inp.guide_scale_2,
        generator=torch.Generator("cpu").manual_seed(inp.seed),
        output_type="np",
        max_sequence_length=512,
        callback_on_step_end=mark,
        callback_on_step_end_tensor_inputs=[],
    )
    return gaps(marks)


def callback_cost(model: WanModel, calls: int = 20000) -> float:
    """The only per-step work the project adds to diffusers' loop, timed without the noise of a step."""
    from wan.model import _StepCallback

    callback = _StepCallback(model, calls, time.monotonic(), lambda info: None, lambda: False)
    timestep = torch.tensor(900.0)
    started = time.perf_counter()
    for i in range(calls):
        callback(None, i, timestep, {})
    return (time.perf_counter() - started) / calls


def gaps(marks: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(marks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="t2v-A14B", choices=["t2v-A14B", "ti2v-5B"])
    parser.add_argument("--size", default="128*128")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("*"))

    with tempfile.TemporaryDirectory() as tmp:
        make_tiny(tmp, args.task, dims=MEDIUM)
        model = WanModel.load(tmp, PRESETS[args.task])
        pipe = plain_pipeline(model)
        inp = GenerationInput.from_preset(
            model.preset, "a cat", size=(width, height), frame_num=args.frames, sample_steps=args.steps, seed=1
        )
        project_steps(model, inp)  # warm-up both paths
        plain_steps(pipe, model, inp)
        project, plain, ratios = [], [], []
        for i in range(args.repeats):
            # Adjacent runs see the same neighbours; alternating the order cancels drift within a pair.
            if i % 2:
                theirs_run, ours_run = plain_steps(pipe, model, inp), project_steps(model, inp)
            else:
                ours_run, theirs_run = project_steps(model, inp), plain_steps(pipe, model, inp)
            project += ours_run
            plain += theirs_run
            ratios.append(statistics.median(ours_run) / statistics.median(theirs_run))
        hook_s = callback_cost(model)
    ours, theirs = statistics.median(project), statistics.median(plain)
    tokens = model.spec.tokens(width, height, args.frames)
    print(f"model: {args.task} random, {MEDIUM}, {width}*{height}x{args.frames} ({tokens} tokens), CFG")
    print(f"torch threads: {torch.get_num_threads()}; CPU time per step, median of {len(project)} steps each")
    print(f"project pipeline : {ours:.4f} s/step")
    print(f"plain diffusers  : {theirs:.4f} s/step")
    print(f"per-step hook    : {hook_s * 1e6:.1f} us (progress + cancel check, timed alone)")
    print(f"ratio            : {statistics.median(ratios):.3f}  (median of {len(ratios)} paired runs; target <= 1.02)")


if __name__ == "__main__":
    main()
