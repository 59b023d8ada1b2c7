"""Per-task facts from Wan2.2's own configs. Torch-free: ingest reads these."""

from __future__ import annotations

from typing import Literal

import msgspec

Kind = Literal["t2v", "i2v", "ti2v"]

# `sample_neg_prompt` of the release's shared config (wan/configs/shared_config.py): what the
# release's pipelines use whenever a job's negative prompt is empty. Kept in the original Chinese:
# the text encoder was trained with it, and a translation would condition differently.
RELEASE_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
    "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)


class TaskPreset(msgspec.Struct, frozen=True, kw_only=True):
    """Defaults and limits of one task type.

    `guide_scale` is (low-noise expert, high-noise expert); single-expert models use the first.
    `boundary_ratio` is the MoE switch point as a fraction of the 1000 training timesteps; None
    means one expert. `vae_stride` × `patch_size` is the granularity a size must respect.
    `negative_prompt` replaces an empty negative prompt (the release's rule).
    """

    name: str
    kind: Kind
    sizes: tuple[str, ...]
    frame_num: int
    sample_steps: int
    sample_shift: float
    guide_scale: tuple[float, float]
    boundary_ratio: float | None
    fps: int
    needs_image: bool = False
    accepts_image: bool = False
    vae_stride: int = 8
    patch_size: int = 2
    max_frames: int = 241
    max_steps: int = 100
    negative_prompt: str = RELEASE_NEGATIVE_PROMPT

    @property
    def size_multiple(self) -> int:
        return self.vae_stride * self.patch_size


A14B_SIZES = ("1280*720", "720*1280", "832*480", "480*832")

PRESETS: dict[str, TaskPreset] = {
    "t2v-A14B": TaskPreset(
        name="t2v-A14B",
        kind="t2v",
        sizes=A14B_SIZES,
        frame_num=81,
        sample_steps=40,
        sample_shift=12.0,
        guide_scale=(3.0, 4.0),
        boundary_ratio=0.875,
        fps=16,
    ),
    "i2v-A14B": TaskPreset(
        name="i2v-A14B",
        kind="i2v",
        sizes=A14B_SIZES,
        frame_num=81,
        sample_steps=40,
        sample_shift=5.0,
        guide_scale=(3.5, 3.5),
        boundary_ratio=0.900,
        fps=16,
        needs_image=True,
        accepts_image=True,
    ),
    "ti2v-5B": TaskPreset(
        name="ti2v-5B",
        kind="ti2v",
        sizes=("1280*704", "704*1280"),
        frame_num=121,
        sample_steps=50,
        sample_shift=5.0,
        guide_scale=(5.0, 5.0),
        boundary_ratio=None,
        fps=24,
        accepts_image=True,
        vae_stride=16,
    ),
}


def parse_size(size: str) -> tuple[int, int]:
    """'832*480' → (width, height). Raises ValueError with the reason."""
    sep = "*" if "*" in size else "x"
    parts = size.lower().split(sep)
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size must look like WIDTH*HEIGHT, got {size!r}")
    width, height = (int(p) for p in parts)
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return width, height


def check_frame_num(frames: int) -> None:
    if frames < 1 or (frames - 1) % 4 != 0:
        raise ValueError(f"frame_num must be 4k+1 (1, 5, 9, ... 81), got {frames}")


def negative_prompt_for(preset: TaskPreset, requested: str | None) -> str:
    """The negative prompt a job runs with: the request's, or the task's default when it is empty
    (the release treats an empty negative prompt as "use `sample_neg_prompt`")."""
    return requested or preset.negative_prompt


def derive_preset(base: TaskPreset, name: str, overrides: dict[str, object]) -> TaskPreset:
    """A deployment's own task: a built-in preset with some fields replaced."""
    unknown = set(overrides) - {f.name for f in msgspec.structs.fields(TaskPreset)}
    if unknown:
        raise ValueError(f"unknown preset fields: {sorted(unknown)}")
    fields = msgspec.structs.asdict(base) | dict(overrides) | {"name": name}
    return msgspec.convert(fields, TaskPreset, strict=False)


def expert_guidance(
    preset: TaskPreset, value: float | list[float] | tuple[float, ...] | None = None
) -> tuple[float, float | None]:
    """A job's guidance as (guide_scale, guide_scale_2) in diffusers' order.

    diffusers' `guidance_scale` drives the high-noise expert (`transformer`, and the only expert of
    single-expert models) and `guidance_scale_2` the low-noise expert (`transformer_2`). Wan2.2's
    own order, kept by presets and requests, is (low-noise, high-noise). `value` is a request's
    override: one number for both experts, or a (low, high) pair.
    """
    if value is None:
        low, high = preset.guide_scale
    elif isinstance(value, (int, float)):
        low = high = float(value)
    elif len(value) == 2:
        low, high = (float(v) for v in value)
    elif len(value) == 1:
        low = high = float(value[0])
    else:
        raise ValueError(f"guide_scale must be a number or a (low-noise, high-noise) pair, got {value!r}")
    if preset.boundary_ratio is None:
        return (low, None)
    return (high, low)
