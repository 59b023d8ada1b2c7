"""Per-task speed options (the models TOML), as plain data. Torch-free: ingest reads the config.

    [tasks.t2v-A14B-fast]
    base = "t2v-A14B"
    sample_steps = 4               # a task sets its own steps, shift and guidance (preset fields)
    guide_scale = [1.0, 1.0]       # guidance 1.0: no unconditional pass
    loras = [
      { path = "/models/lightx2v/high_noise.safetensors", expert = "high_noise" },
      { path = "/models/lightx2v/low_noise.safetensors", expert = "low_noise" },
    ]
    step_cache = { kind = "first_block", threshold = 0.05 }
    compile_blocks = true
    fp8 = false
    parallel_decode = true

Every option is off by default except what is exact. What each one changes is in
docs/performance.md.
"""

from __future__ import annotations

from typing import Literal

import msgspec

Expert = Literal["both", "high_noise", "low_noise"]


class LoraSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A LoRA adapter (safetensors, diffusers/PEFT or original Wan key names) fused into the
    weights at load. `expert` picks the A14B expert it belongs to; single-expert models take "both"."""

    path: str
    expert: Expert = "both"
    scale: float = 1.0


class StepCacheSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """diffusers' step caching hooks on each expert.

    `first_block`: skip the other blocks of a forward when the first block's residual changed by
    less than `threshold` (relative mean) since the last full forward; reuses the cached residual.
    Each rank decides from its own tokens, so it needs world_size 1.
    `taylorseer`: full forwards every `interval` steps after `warmup_steps` full ones, Taylor
    predictions of the attention outputs in between. A fixed schedule: safe over any world size.
    """

    kind: Literal["first_block", "taylorseer"]
    threshold: float = 0.05
    interval: int = 5
    warmup_steps: int = 3
    max_order: int = 1


class Speedups(msgspec.Struct, frozen=True, kw_only=True):
    loras: tuple[LoraSpec, ...] = ()
    step_cache: StepCacheSpec | None = None
    compile_blocks: bool = False  # regional torch.compile of the repeated transformer blocks
    fp8: bool = False  # FP8 weights and activations (torchao) on GPUs with compute capability >= 8.9
    parallel_decode: bool = False  # the VAE's tiled decode, its tiles shared by every rank (wan.decode)

    def check(self, *, experts: int, world_size: int) -> None:
        """Refuse combinations that cannot work, with the reason (raised on every rank alike)."""
        for lora in self.loras:
            if experts == 1 and lora.expert != "both":
                raise ValueError(f"LoRA {lora.path}: expert {lora.expert!r} needs a two-expert (A14B) model")
        if self.compile_blocks and world_size > 1:
            raise ValueError(
                "compile_blocks needs world_size 1: diffusers' context-parallel hooks on the blocks do not "
                "trace with torch.compile (dynamo: unsupported hasattr call)"
            )
        cache = self.step_cache
        if cache is not None:
            if cache.kind == "first_block" and world_size > 1:
                raise ValueError(
                    "step_cache kind 'first_block' decides per rank from that rank's tokens, so ranks of a "
                    "sequence-parallel gang could disagree; use kind 'taylorseer' (a fixed schedule) or world_size 1"
                )
            if cache.threshold <= 0 or cache.interval < 1 or cache.warmup_steps < 0 or cache.max_order < 0:
                raise ValueError(f"step_cache: threshold > 0, interval >= 1, warmup_steps >= 0 needed, got {cache}")
