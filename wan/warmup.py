"""Warm-up before a gang reports ready: one short real job per shape a task lists (`warmup` in the
models TOML, "WIDTH*HEIGHTxFRAMES"), so that no user's job pays the first run at a shape (the
regional compile of `compile_blocks`, attention and convolution autotuning, the allocator growing
to the job's peak).

A warm-up is `WanModel.generate` itself, on every rank: a multi-rank gang runs exactly the
collectives of a job, in the same order, so it stays in lockstep. Two-expert models run two steps
at flow shift 1.0, whose timesteps are 999 and 499: one step of each expert, on either side of
the boundary (0.875 or 0.900). Guidance is the task's own, so an expert that guides runs both of
its passes. Nothing is published and the frames are dropped.

Parsing and checking the shapes is torch-free: ingest and `services.models_config` read them.
"""

from __future__ import annotations

import time
from typing import Any

from wan.job import GenerationInput
from wan.presets import TaskPreset, check_frame_num, parse_size
from wan.sizing import output_size

WarmupShape = tuple[int, int, int]  # width, height, frames

TWO_EXPERT_SHIFT = 1.0  # with 2 steps: timesteps 999 (high-noise expert) and 499 (low-noise)
PROMPT = "warm-up"


def parse_shape(text: str) -> WarmupShape:
    """'832*480x81' → (832, 480, 81). Raises ValueError with the reason."""
    size, sep, frames = text.strip().lower().rpartition("x")
    if not sep or "*" not in size or not frames.isdigit():
        raise ValueError(f"{text!r} must look like WIDTH*HEIGHTxFRAMES, e.g. 832*480x81")
    width, height = parse_size(size)
    return width, height, int(frames)


def check_shape(preset: TaskPreset, text: str) -> WarmupShape:
    """A shape a job of this task could run at: the size granularity, 4k+1 frames up to the
    preset's cap, and no more pixels than its largest size (an image job covers at most that area,
    in the image's aspect ratio, so sizes outside the list are allowed)."""
    width, height, frames = parse_shape(text)
    multiple = preset.size_multiple
    if width % multiple or height % multiple:
        raise ValueError(f"{text!r}: width and height must be multiples of {multiple}")
    try:
        check_frame_num(frames)
    except ValueError:
        raise ValueError(f"{text!r}: the frame count must be 4k+1 (1, 5, 9, ... 81), got {frames}") from None
    if frames > preset.max_frames:
        raise ValueError(f"{text!r}: {frames} frames is more than the task's max_frames {preset.max_frames}")
    largest = max(preset.sizes, key=lambda size: _area(parse_size(size)))
    if width * height > _area(parse_size(largest)):
        raise ValueError(f"{text!r}: larger than the task's largest size {largest}")
    try:
        _requested_size(preset, width, height)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    return width, height, frames


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _requested_size(preset: TaskPreset, width: int, height: int) -> tuple[int, int]:
    """The size to ask for so that the video comes out at width x height. With an image the size
    is an area the release's rounding fills from below: the shape's own area can come out a patch
    short (832*480 gives 832x464, the square roots landing just under 480), one row more cannot."""
    if not preset.needs_image:
        return width, height
    requested = (width, height + 1)
    made = output_size(preset.kind, requested, (width, height), preset.vae_stride, preset.patch_size)
    if made != (width, height):
        raise ValueError(f"an image job cannot come out at {width}*{height} (it gives {made[0]}*{made[1]})")
    return requested


def warmup_input(preset: TaskPreset, shape: WarmupShape) -> GenerationInput:
    """The job a warm-up runs: one step per expert at `shape`, the task's guidance and negative
    prompt, a plain grey image where the task needs one (its aspect ratio is the shape's, so the
    video keeps the shape; `wan.sizing`). ti2v warms its text-to-video path."""
    width, height, frames = shape
    two_experts = preset.boundary_ratio is not None
    image = None
    if preset.needs_image:
        from PIL import Image

        image = Image.new("RGB", (width, height), (128, 128, 128))
    return GenerationInput.from_preset(
        preset,
        PROMPT,
        image=image,
        size=_requested_size(preset, width, height),
        frame_num=frames,
        sample_steps=2 if two_experts else 1,
        sample_shift=TWO_EXPERT_SHIFT if two_experts else None,
        seed=0,
    )


def warm_up(model: Any, shape: WarmupShape) -> tuple[float, list[str]]:
    """Run the warm-up job of `shape` on `model` (a `WanModel`; every rank of the gang calls this
    together). Returns its seconds and the experts its steps ran, in order."""
    experts: list[str] = []
    last = model.last_input  # a warm-up is not a job: keep what the last job ran with
    started = time.perf_counter()
    try:
        model.generate(warmup_input(model.preset, shape), on_step=lambda info: experts.append(info.expert))
    finally:
        model.last_input = last
    return time.perf_counter() - started, experts
