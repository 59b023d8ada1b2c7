"""The plain data a generation needs and reports. Torch-free (re-exported by `wan.model`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from wan.presets import TaskPreset, expert_guidance, negative_prompt_for

if TYPE_CHECKING:
    from PIL.Image import Image


# Where a job's initial noise is drawn. "cpu": a CPU generator, so a seed gives the same video on
# every device kind and world size. "device": a generator on the model's device, as the release's
# generate.py draws it, so on a GPU a seed gives the release's video (but CUDA's random numbers
# depend on the GPU model, so not the same one on every kind of GPU).
NoiseDevice = Literal["cpu", "device"]
NOISE_DEVICES: tuple[str, ...] = get_args(NoiseDevice)


class Cancelled(Exception):
    """The job was cancelled between denoising steps; nothing was decoded."""

    def __init__(self, step: int, total: int):
        self.step, self.total = step, total
        super().__init__(f"cancelled after step {step} of {total}")


@dataclass(frozen=True)
class AdapterChoice:
    """One LoRA adapter of a job, resolved from the task's registry (never a path from a request);
    `expert` as in the models TOML: both, high_noise (`transformer`) or low_noise (`transformer_2`)."""

    name: str
    path: str
    scale: float = 1.0
    expert: Literal["both", "high_noise", "low_noise"] = "both"


@dataclass
class StepInfo:
    step: int  # 1-based
    total: int
    expert: str  # "high_noise", "low_noise", or "single" for one-expert models
    elapsed_s: float  # since generate() started
    preview: bytes | None = None  # a small JPEG of the clean-video estimate, every `preview_every` steps


@dataclass
class GenerationInput:
    """One job. Guidance is in diffusers' order: `guide_scale` drives the high-noise expert
    (`transformer`; the only one of single-expert models), `guide_scale_2` the low-noise expert
    (`transformer_2`; None = same as `guide_scale`). Presets keep Wan's (low, high) order: use
    `from_preset` or `wan.presets.expert_guidance` to convert. A negative seed means "pick one"
    (rank 0 picks; every rank uses its pick). An empty negative prompt means the task's default
    (the release's). With an image, width x height is the area the video may cover; its shape
    follows the image (`wan.sizing`)."""

    prompt: str
    negative_prompt: str
    image: Image | None
    width: int
    height: int
    frame_num: int
    sample_steps: int
    sample_shift: float
    guide_scale: float
    guide_scale_2: float | None
    seed: int
    loras: tuple[AdapterChoice, ...] = ()  # switched in before the job (wan.adapters)

    @classmethod
    def from_preset(
        cls,
        preset: TaskPreset,
        prompt: str,
        *,
        negative_prompt: str = "",
        image: Image | None = None,
        size: tuple[int, int] | None = None,
        frame_num: int | None = None,
        sample_steps: int | None = None,
        sample_shift: float | None = None,
        guide_scale: float | list[float] | None = None,
        seed: int = -1,
    ) -> GenerationInput:
        from wan.presets import parse_size

        width, height = size or parse_size(preset.sizes[0])
        high, low = expert_guidance(preset, guide_scale)
        return cls(
            prompt=prompt,
            negative_prompt=negative_prompt_for(preset, negative_prompt),
            image=image,
            width=width,
            height=height,
            frame_num=frame_num or preset.frame_num,
            sample_steps=sample_steps or preset.sample_steps,
            sample_shift=sample_shift if sample_shift is not None else preset.sample_shift,
            guide_scale=high,
            guide_scale_2=low,
            seed=seed,
        )


@dataclass
class ParallelContext:
    """Where this process sits in its gang. The torch.distributed group is set up by the caller."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    # None = the ranks of one pass (world_size / cfg_degree); the rest of them go to ring attention
    ulysses_degree: int | None = None
    fsdp: bool = False
    text_encoder_on_cpu: bool = False
    # 2: the two halves of the gang run the conditional and the unconditional pass at once (wan.cfgparallel)
    cfg_degree: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0
