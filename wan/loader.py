"""Reads a diffusers-layout Wan2.2 checkpoint into resident modules, fast.

diffusers' own `from_pretrained` needs `accelerate` for Wan transformers (they keep some modules in
fp32, which it only supports on the low-memory path) and otherwise random-initialises every weight
before overwriting it. Here a model is built on the meta device and its safetensors are assigned
straight in: one sequential read per file (`wan.tensors`), a cast only where the dtype differs.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wan.layout import LayoutError
from wan.tensors import read_safetensors

_SINGLE = "diffusion_pytorch_model.safetensors"
_INDEX = "diffusion_pytorch_model.safetensors.index.json"


@dataclass
class Components:
    """Everything a Wan pipeline is built from, resident on its devices."""

    index: dict[str, Any]
    tokenizer: Any
    text_encoder: nn.Module
    vae: nn.Module
    scheduler: Any
    transformer: nn.Module
    transformer_2: nn.Module | None


def read_index(ckpt_dir: Path) -> dict[str, Any]:
    path = ckpt_dir / "model_index.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LayoutError(f"{ckpt_dir}: cannot read model_index.json: {exc}") from None


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of one diffusers model folder (single file or sharded)."""
    if (folder / _SINGLE).is_file():
        return [folder / _SINGLE]
    if (folder / _INDEX).is_file():
        weight_map = json.loads((folder / _INDEX).read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    raise LayoutError(f"{folder}: no {_SINGLE} (or sharded index); only safetensors checkpoints are supported")


def load_diffusers_model(cls: type, folder: Path, *, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """Build `cls` from `folder`/config.json on the meta device and assign its weights in place."""
    config = cls.load_config(folder)
    with torch.device("meta"):
        model = cls.from_config(config)
    keep_fp32 = tuple(getattr(cls, "_keep_in_fp32_modules", None) or ())
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        for name, tensor in read_safetensors(path).items():
            state[name] = _cast(name, tensor.to(device), dtype, keep_fp32)  # cast after the move: faster on GPU
    model.load_state_dict(state, strict=True, assign=True)
    _rebuild_meta_buffers(model, device)
    model.requires_grad_(False)
    return model.eval()


def _cast(name: str, tensor: torch.Tensor, dtype: torch.dtype, keep_fp32: tuple[str, ...]) -> torch.Tensor:
    # Same rule as diffusers: modules named in `_keep_in_fp32_modules` stay fp32 (norms, time embedder).
    if not tensor.is_floating_point():
        return tensor
    target = torch.float32 if any(part in keep_fp32 for part in name.split(".")) else dtype
    return tensor if tensor.dtype == target else tensor.to(target)


def _rebuild_meta_buffers(model: nn.Module, device: torch.device) -> None:
    """Non-persistent buffers (the rope tables) are not in the checkpoint: recompute them."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    for module in model.modules():
        if isinstance(module, WanRotaryPosEmbed) and module.freqs_cos.is_meta:
            cos, sin = _rope_tables(module.attention_head_dim, tuple(module.patch_size), module.max_seq_len)
            module.register_buffer("freqs_cos", cos.to(device), persistent=False)
            module.register_buffer("freqs_sin", sin.to(device), persistent=False)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise LayoutError(f"{type(model).__name__}: weights missing from the checkpoint: {left[:5]}")


@functools.lru_cache(maxsize=4)
def _rope_tables(head_dim: int, patch: tuple[int, ...], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Computed once per shape (both A14B experts share it); read-only afterwards.
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    rope = WanRotaryPosEmbed(head_dim, patch, max_len)
    return rope.freqs_cos, rope.freqs_sin


def load_components(
    ckpt_dir: Path,
    *,
    dtype: torch.dtype,
    transformer_device: torch.device,
    text_encoder_device: torch.device,
    vae_device: torch.device,
    vae_dtype: torch.dtype = torch.float32,
) -> Components:
    """Load every component named by model_index.json (the diffusers pipeline layout)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    index = read_index(ckpt_dir)
    experts = ["transformer"] + (["transformer_2"] if (index.get("transformer_2") or [None])[0] else [])
    loaded = [
        load_diffusers_model(WanTransformer3DModel, ckpt_dir / name, dtype=dtype, device=transformer_device)
        for name in experts
    ]
    text_encoder = UMT5EncoderModel.from_pretrained(ckpt_dir / "text_encoder", dtype=dtype)
    return Components(
        index=index,
        tokenizer=AutoTokenizer.from_pretrained(ckpt_dir / "tokenizer"),
        text_encoder=text_encoder.to(text_encoder_device).requires_grad_(False).eval(),
        vae=load_diffusers_model(AutoencoderKLWan, ckpt_dir / "vae", dtype=vae_dtype, device=vae_device),
        scheduler=load_scheduler(ckpt_dir / "scheduler"),
        transformer=loaded[0],
        transformer_2=loaded[1] if len(loaded) > 1 else None,
    )


def load_scheduler(folder: Path) -> Any:
    import diffusers

    config = json.loads((folder / "scheduler_config.json").read_text())
    cls = getattr(diffusers, config.get("_class_name", "UniPCMultistepScheduler"))
    return cls.from_config(config)


def released_scheduler() -> Any:
    """The scheduler of the released Wan2.2 diffusers checkpoints (flow UniPC); the shift is set per job."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )


def scheduler_with_shift(scheduler: Any, shift: float) -> Any:
    """A fresh scheduler for one job with the job's flow shift (never the stored one) and, for flow
    UniPC, the release's timesteps (`wan.schedule`)."""
    from wan.schedule import release_scheduler

    return release_scheduler(scheduler, shift)
