"""GenerateRequest → Job: fill defaults from the task's preset and check every field against it.
Pure (no I/O), shared by both front doors."""

from __future__ import annotations

import secrets

from services.contracts import GenerateRequest, Job, JobLora, LoraChoice, now
from services.egress import EgressRefused, check_literal_host, parse_networks
from services.ingest.invalid import Invalid
from services.ingest.settings import IngestSettings
from services.inputs import BadImage, check_reference
from services.models_config import AdapterLookup, ModelsConfig, ServedTask
from wan.presets import TaskPreset, check_frame_num, negative_prompt_for


class Normalizer:
    """Validates requests against the served tasks; built once per process."""

    def __init__(self, models: ModelsConfig, settings: IngestSettings) -> None:
        self.models, self.settings = models, settings
        self.allow_networks = parse_networks(settings.webhook_allow_networks)
        self._registries: dict[str, AdapterLookup] = {}  # per task, read when first asked

    def __call__(self, request: GenerateRequest, request_id: str) -> Job:
        served = self.models.get(request.task)
        if served is None:
            raise Invalid(f"unknown task {request.task!r}; supported: {', '.join(self.models.names)}", "task")
        _check_ckpt(request.ckpt_dir, served)
        preset = served.preset
        width, height = _size(request.size, preset)
        low, high = _guidance(request.guide_scale, preset)
        _check_layout(served, low, high)
        created_at = now()
        return Job(
            task_id=request.task_id or secrets.token_hex(16),  # a uuid4's randomness, without the object
            task=request.task,
            prompt=_prompt(request.prompt, self.settings.max_prompt_chars),
            # Empty means the task's default (the release's `sample_neg_prompt` unless configured).
            negative_prompt=negative_prompt_for(preset, request.negative_prompt),
            image=_image(request.image, preset, self.settings),
            width=width,
            height=height,
            frame_num=_frames(request.frame_num, preset),
            sample_steps=_steps(request.sample_steps, preset),
            sample_shift=request.sample_shift or preset.sample_shift,
            guide_scale=(low, high),
            seed=request.seed if request.seed is not None and request.seed >= 0 else secrets.randbelow(2**31),
            fps=preset.fps,
            webhook_url=self._webhook(request.webhook_url),
            metadata=request.metadata or {},
            max_attempts=request.max_attempts or served.max_attempts,
            request_id=request_id,
            created_at=created_at,
            priority=request.priority or "normal",
            deadline_at=created_at + request.deadline_s if request.deadline_s else 0.0,
            loras=self._loras(request.loras or [], served),
        )

    def _loras(self, choices: list[LoraChoice], served: ServedTask) -> list[JobLora]:
        """Names of the task's registry only; its scale and expert unless the request gives them."""
        if not choices:
            return []
        registry = self._registries.get(served.name)
        if registry is None:
            registry = self._registries[served.name] = AdapterLookup(served.lora_registry)
        one_expert = served.preset.boundary_ratio is None
        resolved = []
        for choice in choices:
            entry = registry.get(choice.name)
            if entry is None:
                known = ", ".join(sorted(registry.entries)) or "none"
                raise Invalid(f"unknown LoRA {choice.name!r} for {served.name}; known: {known}", "loras")
            expert = choice.expert or entry.expert
            if one_expert and expert != "both":
                raise Invalid(f"{served.name} has one expert: a LoRA's expert must be both", "loras")
            resolved.append(JobLora(name=entry.name, scale=entry.scale if choice.scale is None else choice.scale,
                                    expert=expert))  # fmt: skip
        return resolved

    def _webhook(self, url: str | None) -> str | None:
        if not url:
            return None
        try:
            check_literal_host(url, self.allow_networks)
        except EgressRefused as exc:
            raise Invalid(f"webhook_url refused: {exc}", "webhook_url") from None
        return url


def _check_ckpt(ckpt_dir: str | None, served: ServedTask) -> None:
    """A request may name the checkpoint only when it names the configured one."""
    if ckpt_dir is not None and ckpt_dir.rstrip("/") != served.ckpt_dir.rstrip("/"):
        raise Invalid("ckpt_dir is chosen by the server; omit it or name the configured checkpoint", "ckpt_dir")


def _check_layout(served: ServedTask, low: float, high: float) -> None:
    """A guidance the task's gang layout cannot run (guidance 1.0 with cfg_degree 2) is refused here."""
    refusal = served.cfg_parallel_refusal(low, high)
    if refusal:
        raise Invalid(refusal, "guide_scale")


def _prompt(prompt: str, limit: int) -> str:
    text = prompt.strip()
    if not text:
        raise Invalid("prompt must not be empty", "prompt")
    if len(text) > limit:
        raise Invalid(f"prompt is {len(text)} characters; the limit is {limit}", "prompt", "too_large")
    return text


def _size(size: str | None, preset: TaskPreset) -> tuple[int, int]:
    chosen = (size or preset.sizes[0]).replace("x", "*").replace("X", "*")
    if chosen not in preset.sizes:
        raise Invalid(f"size {size!r} is not supported by {preset.name}; supported: {', '.join(preset.sizes)}", "size")
    width, height = (int(part) for part in chosen.split("*"))
    return width, height


def _frames(frames: int | None, preset: TaskPreset) -> int:
    value = preset.frame_num if frames is None else frames
    try:
        check_frame_num(value)
    except ValueError as exc:
        raise Invalid(str(exc), "frame_num") from None
    if value > preset.max_frames:
        raise Invalid(f"frame_num {value} exceeds {preset.max_frames} for {preset.name}", "frame_num")
    return value


def _steps(steps: int | None, preset: TaskPreset) -> int:
    value = preset.sample_steps if steps is None else steps
    if value > preset.max_steps:
        raise Invalid(f"sample_steps {value} exceeds {preset.max_steps} for {preset.name}", "sample_steps")
    return value


def _guidance(scale: float | list[float] | None, preset: TaskPreset) -> tuple[float, float]:
    """One number sets both experts; a pair is (low-noise, high-noise) as in Wan2.2's configs."""
    if scale is None:
        return preset.guide_scale
    if isinstance(scale, int | float):
        return float(scale), float(scale)
    if len(scale) == 1:
        return scale[0], scale[0]
    if len(scale) == 2:
        return scale[0], scale[1]
    raise Invalid("guide_scale must be a number or a pair [low_noise, high_noise]", "guide_scale")


def _image(image: str | None, preset: TaskPreset, settings: IngestSettings) -> str | None:
    if image is None or image == "":
        if preset.needs_image:
            raise Invalid(f"{preset.name} needs an image", "image")
        return None
    if not preset.accepts_image:
        raise Invalid(f"{preset.name} takes no image", "image")
    try:
        return check_reference(image, input_root=settings.input_root, max_bytes=settings.max_image_bytes)
    except BadImage as exc:
        raise Invalid(str(exc), "image") from None
