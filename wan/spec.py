"""What a loaded checkpoint is (shapes, strides), and whether it fits the task's preset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wan.layout import LayoutError
from wan.presets import TaskPreset

if TYPE_CHECKING:
    from wan.loader import Components


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # "t2v", "i2v" or "ti2v", judged from the channel counts
    two_experts: bool
    heads: int
    patch: tuple[int, int, int]  # transformer patch (t, h, w)
    vae_spatial: int
    vae_temporal: int

    @classmethod
    def of(cls, comps: Components) -> ModelSpec:
        cfg, vae = comps.transformer.config, comps.vae.config
        z_dim = vae.z_dim
        if cfg.in_channels == z_dim and z_dim == 48:
            kind = "ti2v"
        elif cfg.in_channels == z_dim:
            kind = "t2v"
        elif cfg.in_channels == 2 * z_dim + vae.scale_factor_temporal:
            kind = "i2v"  # noise + first-frame mask + image latents
        else:
            raise LayoutError(f"transformer in_channels={cfg.in_channels} does not fit a VAE with z_dim={z_dim}")
        return cls(
            kind=kind,
            two_experts=comps.transformer_2 is not None,
            heads=cfg.num_attention_heads,
            patch=tuple(cfg.patch_size),
            vae_spatial=vae.scale_factor_spatial,
            vae_temporal=vae.scale_factor_temporal,
        )

    @property
    def size_multiple(self) -> int:
        return self.vae_spatial * self.patch[1]

    def tokens(self, width: int, height: int, frames: int) -> int:
        """Sequence length the transformer sees for a video of this size."""
        latent_frames = (frames - 1) // self.vae_temporal + 1
        return (latent_frames // self.patch[0]) * (height // self.size_multiple) * (width // self.size_multiple)


def check_against_preset(spec: ModelSpec, preset: TaskPreset) -> None:
    """A checkpoint served under the wrong task would fail deep inside a step; say so at load."""
    if spec.kind != preset.kind:
        raise LayoutError(f"the checkpoint is a {spec.kind} model but task {preset.name} is {preset.kind}")
    if spec.two_experts != (preset.boundary_ratio is not None):
        have = "two experts (transformer, transformer_2)" if spec.two_experts else "one transformer"
        raise LayoutError(
            f"the checkpoint has {have} but task {preset.name} has boundary_ratio={preset.boundary_ratio}"
        )
    if spec.size_multiple != preset.size_multiple:
        raise LayoutError(
            f"the checkpoint needs sizes in multiples of {spec.size_multiple}, task {preset.name} says "
            f"{preset.size_multiple} (vae_stride x patch_size)"
        )
