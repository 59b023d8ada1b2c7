"""The models configuration (`WAN22_MODELS`, TOML): which tasks this deployment serves, from
which checkpoint, on how many ranks. Torch-free, so ingest can read it.

    [tasks.t2v-A14B]
    ckpt_dir = "/models/Wan2.2-T2V-A14B-Diffusers"
    world_size = 8
    fsdp = true

    [tasks.i2v-A14B]
    ckpt_dir = "/models/Wan2.2-I2V-A14B-Diffusers"
    offload = "experts"          # A14B on one 80 GB GPU
    negative_prompt = "..."      # replaces the release's default negative prompt

    [tasks.demo]                 # a task of the deployment's own
    base = "ti2v-5B"
    ckpt_dir = ".wan22/models/demo"
    sizes = ["64*64"]
    frame_num = 5
    sample_steps = 4
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

import msgspec

from services.settings import SettingsError
from wan.guidance import cfg_parallel_refusal
from wan.presets import PRESETS, TaskPreset, derive_preset
from wan.speedups import LoraSpec, Speedups, StepCacheSpec


class ServedTask(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    preset: TaskPreset
    ckpt_dir: str = ""
    world_size: int = 1
    # 2: half the gang runs the conditional pass, half the unconditional one, each half sequence
    # parallel over world_size / 2 ranks (wan.cfgparallel); needs guidance other than 1.0.
    cfg_degree: int = 1
    ulysses_degree: int | None = None
    fsdp: bool = False
    text_encoder_on_cpu: bool = False
    attention_backend: str | None = None
    vae_tiling: bool = False
    # Expert offloading for one GPU (wan.offload): "none", "experts" (only the running expert on
    # the device) or "model" (also the text encoder on the CPU, nothing but the VAE on the
    # device between jobs). Same names as wan.offload.OFFLOAD_MODES; this module stays torch-free.
    offload: Literal["none", "experts", "model"] = "none"
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_attempts: int = 3
    # Speed options (wan.speedups; docs/performance.md): all off by default.
    loras: tuple[LoraSpec, ...] = ()
    step_cache: StepCacheSpec | None = None
    compile_blocks: bool = False
    fp8: bool = False
    parallel_decode: bool = False

    def __post_init__(self) -> None:
        self._check_layout()
        low, high = self.preset.guide_scale
        refusal = self.cfg_parallel_refusal(low, high)
        if refusal:
            raise ValueError(f"guide_scale {list(self.preset.guide_scale)} with {refusal}")

    def _check_layout(self) -> None:
        if self.world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {self.world_size}")
        if self.cfg_degree not in (1, 2):
            raise ValueError(
                f"cfg_degree must be 1 or 2 (the two passes of classifier-free guidance), got {self.cfg_degree}"
            )
        if self.world_size % self.cfg_degree:
            raise ValueError(f"cfg_degree {self.cfg_degree} must divide world_size {self.world_size}")
        per_pass = self.world_size // self.cfg_degree
        if self.ulysses_degree is not None and (self.ulysses_degree < 1 or per_pass % self.ulysses_degree):
            raise ValueError(
                f"ulysses_degree {self.ulysses_degree} must divide world_size {self.world_size} / "
                f"cfg_degree {self.cfg_degree} = {per_pass}"
            )

    def cfg_parallel_refusal(self, low: float, high: float) -> str | None:
        """Why a job of this task with guidance (low-noise, high-noise), Wan's order, cannot run on
        its layout, or None. The generator gives the high-noise value to a single-expert model."""
        two_experts = self.preset.boundary_ratio is not None
        return cfg_parallel_refusal(self.cfg_degree, high, low if two_experts else None)

    @property
    def speedups(self) -> Speedups:
        return Speedups(
            loras=self.loras,
            step_cache=self.step_cache,
            compile_blocks=self.compile_blocks,
            fp8=self.fp8,
            parallel_decode=self.parallel_decode,
        )


_SERVING_FIELDS = {f.name for f in msgspec.structs.fields(ServedTask)} - {"name", "preset"}


class ModelsConfig(msgspec.Struct, frozen=True):
    tasks: dict[str, ServedTask]

    def get(self, name: str) -> ServedTask | None:
        return self.tasks.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self.tasks)


def builtin() -> ModelsConfig:
    """Every built-in preset, with no checkpoint configured (ingest can still route to them)."""
    return ModelsConfig({name: ServedTask(name=name, preset=p) for name, p in PRESETS.items()})


def load_models(path: str) -> ModelsConfig:
    """Built-in presets plus (and overridden by) the tasks of the TOML file at `path`."""
    config = builtin()
    if not path:
        return config
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"WAN22_MODELS: cannot read {path}: {exc}") from None
    tasks = dict(config.tasks)
    for name, table in (data.get("tasks") or {}).items():
        tasks[name] = _served_task(name, dict(table), path)
    return ModelsConfig(tasks)


def _served_task(name: str, table: dict[str, object], path: str) -> ServedTask:
    base_name = str(table.pop("base", name))
    base = PRESETS.get(base_name)
    if base is None:
        raise SettingsError(f"WAN22_MODELS: [tasks.{name}] base {base_name!r} is not one of {sorted(PRESETS)}")
    serving = {k: table.pop(k) for k in list(table) if k in _SERVING_FIELDS}
    try:
        preset = derive_preset(base, name, table)
        return msgspec.convert({"name": name, "preset": preset, **serving}, ServedTask)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise SettingsError(f"WAN22_MODELS: [tasks.{name}] in {path}: {exc}") from None
