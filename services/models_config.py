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

    [tasks.t2v-A14B.lora_registry]   # adapters a request may pick by name (`loras`)
    dir = "/models/loras/t2v"        # every *.safetensors in it, named by its file stem
    [[tasks.t2v-A14B.lora_registry.adapters]]
    name = "anime"
    path = "/models/loras/anime_high.safetensors"
    expert = "high_noise"            # both (default), high_noise or low_noise
    scale = 0.8                      # when a request gives none

    [tasks.demo]                 # a task of the deployment's own
    base = "ti2v-5B"
    ckpt_dir = ".wan22/models/demo"
    sizes = ["64*64"]
    frame_num = 5
    sample_steps = 4
    warmup = ["64*64x5"]         # one short job per shape before the gang reports ready
    noise = "cpu"                # or "device": the release's noise on a GPU (docs/models.md)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from services.settings import SettingsError
from wan.guidance import cfg_parallel_refusal
from wan.offloadmode import OffloadMode, offload_refusal
from wan.presets import PRESETS, TaskPreset, derive_preset
from wan.speedups import LoraSpec, Speedups, StepCacheSpec
from wan.warmup import check_shape

AdapterName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
Expert = Literal["both", "high_noise", "low_noise"]


class RegisteredAdapter(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: AdapterName
    path: str
    expert: Expert = "both"
    scale: float = 1.0


class LoraRegistry(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The LoRA adapters a request may choose by name; requests never name a path."""

    dir: str = ""
    adapters: tuple[RegisteredAdapter, ...] = ()
    switch: Literal["auto", "fuse", "runtime"] = "auto"  # wan.adapters: how a gang switches them
    cache_bytes: int = 4 << 30  # adapter files kept in host memory

    def entries(self) -> dict[str, RegisteredAdapter]:
        """Named entries, then the directory's files (a named entry wins over a file of its name).
        A directory this process cannot read adds nothing (ingest may not mount it: name them)."""
        found: dict[str, RegisteredAdapter] = {}
        root = Path(self.dir) if self.dir else None
        if root is not None and root.is_dir():
            for file in sorted(root.glob("*.safetensors")):
                if _ADAPTER_NAME.fullmatch(file.stem):
                    found[file.stem] = RegisteredAdapter(name=file.stem, path=str(file))
        return found | {entry.name: entry for entry in self.adapters}


class AdapterLookup:
    """A registry's adapters by name, read once; a name not seen yet reads the directory again
    (adapters may be added while the service runs)."""

    def __init__(self, registry: LoraRegistry) -> None:
        self.registry = registry
        self.entries = registry.entries()

    def get(self, name: str) -> RegisteredAdapter | None:
        if name not in self.entries and self.registry.dir:
            self.entries = self.registry.entries()
        return self.entries.get(name)


_ADAPTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


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
    # device between jobs) or "blocks" (the blocks stream from pinned host memory, prefetched
    # `offload_prefetch` blocks ahead; wan.blockoffload).
    offload: OffloadMode = "none"
    offload_prefetch: Annotated[int, msgspec.Meta(ge=1, le=4)] = 1
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    max_attempts: int = 3
    # Speed options (wan.speedups; docs/performance.md): all off by default.
    loras: tuple[LoraSpec, ...] = ()
    step_cache: StepCacheSpec | None = None
    compile_blocks: bool = False
    fp8: bool = False
    parallel_decode: bool = False
    lora_registry: LoraRegistry = LoraRegistry()
    # Previews while a job runs: rank 0 decodes the clean estimate's first frame every
    # `preview_every` steps (wan.preview); /v1/videos' thumbnail and the dashboard show it.
    previews: bool = False
    preview_every: Annotated[int, msgspec.Meta(ge=1)] = 10
    # Shapes ("WIDTH*HEIGHTxFRAMES") the gang runs one short job at after loading and before it
    # reports ready, so no user's job pays the first run at them (compile, autotuning; wan.warmup).
    warmup: tuple[str, ...] = ()
    # Where the initial noise is drawn: "cpu" gives the same video for a seed on every device kind
    # and world size; "device" draws on the rank's GPU as the release's generate.py does, so a seed
    # gives the release's video (docs/models.md). On a CPU the two are the same.
    noise: Literal["cpu", "device"] = "cpu"

    def __post_init__(self) -> None:
        self._check_layout()
        self._check_offload()
        for shape in self.warmup:
            try:
                check_shape(self.preset, shape)
            except ValueError as exc:
                raise ValueError(f"warmup: {exc}") from None
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

    def _check_offload(self) -> None:
        """What the model would refuse at load, refused here at config load."""
        refusal = offload_refusal(self.offload, fsdp=self.fsdp and self.world_size > 1, fp8=self.fp8)
        if refusal:
            raise ValueError(refusal)

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
        served = msgspec.convert({"name": name, "preset": preset, **serving}, ServedTask)
    except (msgspec.ValidationError, TypeError, ValueError) as exc:
        raise SettingsError(f"WAN22_MODELS: [tasks.{name}] in {path}: {exc}") from None
    one_expert = served.preset.boundary_ratio is None
    for entry in served.lora_registry.adapters:
        if one_expert and entry.expert != "both":
            message = f"adapter {entry.name!r} names expert {entry.expert!r}; a one-expert model takes both"
            raise SettingsError(f"WAN22_MODELS: [tasks.{name}.lora_registry] in {path}: {message}")
    return served


def describe(served: ServedTask) -> dict[str, Any]:
    """A served task as discovery shows it (`wan22 models list`, `GET /v1/models`)."""
    preset = served.preset
    adapters = served.lora_registry.entries()
    return {
        "id": served.name,
        "kind": preset.kind,
        "sizes": list(preset.sizes),
        "fps": preset.fps,
        "frame_num": preset.frame_num,
        "max_frames": preset.max_frames,
        "world_size": served.world_size,
        "loras": [{"name": a.name, "expert": a.expert, "scale": a.scale} for a in adapters.values()],
    }


def catalogue(config: ModelsConfig) -> list[dict[str, Any]]:
    return [describe(config.tasks[name]) for name in config.names]
