"""`POST /v1/videos` fields → the service's own `GenerateRequest`: OpenAI's `prompt`, `model`,
`size`, `seconds`, `input_reference`, the extensions SGLang Diffusion and vLLM-Omni take, and
ours. The request then goes through the same checks as `POST /generate`; errors name the field
as the client spelled it."""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Struct

from services.contracts import (
    MAX_LORAS,
    DeadlineS,
    GenerateRequest,
    LoraChoice,
    Metadata,
    Priority,
    Prompt,
    Seed,
    Url,
)
from services.ingest.invalid import Invalid
from services.ingest.parse import invalid_from
from services.models_config import ModelsConfig, ServedTask

Scale = Annotated[float, Meta(ge=0, le=50)]


class VideoCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    prompt: Prompt
    model: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    size: Annotated[str, Meta(max_length=16)] | None = None
    seconds: str | float | None = None
    input_reference: Url | dict[str, Url] | None = None
    # What SGLang Diffusion and vLLM-Omni take as well.
    width: Annotated[int, Meta(ge=16, le=4096)] | None = None
    height: Annotated[int, Meta(ge=16, le=4096)] | None = None
    negative_prompt: Prompt | None = None
    seed: Seed | None = None
    num_frames: Annotated[int, Meta(ge=1, le=1001)] | None = None
    num_inference_steps: Annotated[int, Meta(ge=1, le=1000)] | None = None
    guidance_scale: Scale | None = None  # the low-noise expert (the only one of one-expert models)
    guidance_scale_2: Scale | None = None  # the high-noise expert of A14B
    flow_shift: Annotated[float, Meta(gt=0, le=100)] | None = None
    fps: Annotated[int, Meta(ge=1, le=120)] | None = None
    # Ours, as on POST /generate.
    priority: Priority | None = None
    deadline_s: DeadlineS | None = None
    webhook_url: Url | None = None
    metadata: Metadata | None = None
    idempotency_key: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    max_attempts: Annotated[int, Meta(ge=1, le=20)] | None = None
    loras: Annotated[list[LoraChoice], Meta(max_length=MAX_LORAS)] | None = None


# The `GenerateRequest` field a check names → the field of this API.
PARAM_OF_FIELD = {
    "task": "model",
    "image": "input_reference",
    "frame_num": "num_frames",
    "sample_steps": "num_inference_steps",
    "sample_shift": "flow_shift",
    "guide_scale": "guidance_scale",
}


def parse_create(values: dict[str, Any]) -> VideoCreate:
    try:
        return msgspec.convert(values, VideoCreate, strict=False)
    except msgspec.ValidationError as exc:
        raise invalid_from(exc) from None


def to_request(create: VideoCreate, models: ModelsConfig, default_model: str) -> GenerateRequest:
    """Invalid names this API's field; unknown models list the served ones."""
    name = create.model or default_model
    if not name:
        raise Invalid(f"model is required; served: {', '.join(models.names)}", "model")
    served = models.get(name)
    if served is None:
        raise Invalid(f"unknown model {name!r}; served: {', '.join(models.names)}", "model")
    if create.fps is not None and create.fps != served.preset.fps:
        raise Invalid(f"fps is fixed at {served.preset.fps} for {name}; omit it", "fps")
    return GenerateRequest(
        task=name,
        prompt=create.prompt,
        image=_reference(create.input_reference),
        size=_size(create),
        negative_prompt=create.negative_prompt,
        seed=create.seed,
        frame_num=create.num_frames if create.num_frames is not None else _frames(create.seconds, served),
        sample_steps=create.num_inference_steps,
        sample_shift=create.flow_shift,
        guide_scale=_guidance(create, served),
        webhook_url=create.webhook_url,
        metadata=create.metadata,
        idempotency_key=create.idempotency_key,
        max_attempts=create.max_attempts,
        priority=create.priority,
        deadline_s=create.deadline_s,
        loras=create.loras,
    )


def _reference(reference: str | dict[str, str] | None) -> str | None:
    """A URL, or OpenAI's reference object `{"image_url": ...}`."""
    if isinstance(reference, dict):
        if set(reference) != {"image_url"}:
            raise Invalid("input_reference as an object takes one field, image_url", "input_reference")
        return reference["image_url"]
    return reference


def _size(create: VideoCreate) -> str | None:
    if create.size is not None:
        width, sep, height = create.size.lower().partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            raise Invalid(f"size {create.size!r} must be WIDTHxHEIGHT, e.g. 832x480", "size")
        if create.width is not None or create.height is not None:
            raise Invalid("give size or width and height, not both", "size")
        return f"{width}*{height}"
    if (create.width is None) != (create.height is None):
        raise Invalid("width and height go together", "width" if create.width is None else "height")
    return f"{create.width}*{create.height}" if create.width is not None else None


def frames_for_seconds(seconds: float, fps: int) -> int:
    """The release's 4n+1 frame counts: 5 s at 16 fps is 81 frames, at 24 fps 121."""
    return 4 * max(1, round(seconds * fps / 4)) + 1


def seconds_of(frames: int, fps: int) -> str:
    """The inverse, as the API writes durations: 81 frames at 16 fps → "5"."""
    return f"{(frames - 1) / fps:g}" if fps else "0"


def _frames(seconds: str | float | None, served: ServedTask) -> int | None:
    if seconds is None:
        return None
    try:
        value = float(seconds)
    except ValueError:
        raise Invalid(f"seconds must be a number, got {seconds!r}", "seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise Invalid("seconds must be a positive number", "seconds")
    preset = served.preset
    frames = frames_for_seconds(value, preset.fps)
    if frames > preset.max_frames:
        longest = seconds_of(preset.max_frames, preset.fps)
        message = f"seconds {value:g} is {frames} frames at {preset.fps} fps; {served.name} makes at most {longest} s"
        raise Invalid(message, "seconds")
    return frames


def _guidance(create: VideoCreate, served: ServedTask) -> list[float] | None:
    """(low-noise, high-noise) as the service takes it; one given value sets its expert, the
    other keeps the preset's, except that `guidance_scale` alone sets both (as diffusers does)."""
    low, high = create.guidance_scale, create.guidance_scale_2
    if low is None and high is None:
        return None
    if high is None:
        return [low, low]  # type: ignore[list-item]
    return [served.preset.guide_scale[0] if low is None else low, high]
