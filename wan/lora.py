"""LoRA adapters fused into the resident experts at load time.

The file is read and its keys normalised by diffusers' own `WanLoraLoaderMixin.lora_state_dict`
(diffusers/PEFT names, the original Wan release's `diffusion_model.*` names and musubi's), and the
scale per module follows PEFT's rule (`lora_alpha / r`, or `/ sqrt(r)` with rsLoRA, per-module
patterns from the file's metadata; alpha = rank when the file has none). The fused weight is
`W + scale * s * B @ A` (and `b + scale * s * b_B` for LoRA biases), computed in fp32: after the
fuse there is no adapter left, so a step costs exactly what it cost without the LoRA, and no PEFT
at run time.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from wan.speedups import LoraSpec

_PREFIX = "transformer."


def read_lora(path: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(diffusers-named state dict, adapter metadata without the `transformer.` prefix)."""
    from diffusers.loaders.lora_pipeline import WanLoraLoaderMixin

    try:
        state, metadata = WanLoraLoaderMixin.lora_state_dict(path, return_lora_metadata=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"LoRA {path}: cannot read it: {exc}") from None
    meta = {k.removeprefix(_PREFIX): v for k, v in (metadata or {}).items()}
    return state, meta


def fuse_lora(model: nn.Module, spec: LoraSpec) -> int:
    """Fuse one LoRA file into `model` (a WanTransformer3DModel). Returns the number of layers
    changed; a key that names no layer of the model is an error (a LoRA for another model)."""
    state, meta = read_lora(spec.path)
    pairs = _pairs(state, spec.path)
    modules = dict(model.named_modules())
    missing = sorted(name for name in pairs if name not in modules)
    if missing:
        raise ValueError(f"LoRA {spec.path}: no layer named {missing[:3]} in the model (a LoRA for another model?)")
    with torch.no_grad():
        for name, (down, up, bias) in pairs.items():
            layer = modules[name]
            rank = down.shape[0]
            scale = spec.scale * _alpha(meta, name, rank) / (math.sqrt(rank) if meta.get("use_rslora") else rank)
            weight = layer.weight
            delta = up.to(torch.float32) @ down.to(torch.float32)
            if delta.shape != weight.shape:
                raise ValueError(f"LoRA {spec.path}: {name} is {tuple(delta.shape)}, the model's {tuple(weight.shape)}")
            weight.copy_((weight.to(torch.float32) + scale * delta.to(weight.device)).to(weight.dtype))
            if bias is not None:
                layer.bias.copy_(
                    (layer.bias.to(torch.float32) + scale * bias.to(layer.bias.device)).to(layer.bias.dtype)
                )
    return len(pairs)


def _pairs(state: dict[str, torch.Tensor], path: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, Any]]:
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor, Any]] = {}
    for key in state:
        match = re.fullmatch(r"(?:transformer\.)?(.+)\.lora_A\.weight", key)
        if not match:
            if not re.fullmatch(r"(?:transformer\.)?.+\.lora_B\.(weight|bias)", key):
                raise ValueError(f"LoRA {path}: unsupported key {key!r} (only LoRA A/B pairs can be fused)")
            continue
        name = match.group(1)
        prefix = key[: -len(".lora_A.weight")]
        up = state.get(f"{prefix}.lora_B.weight")
        if up is None:
            raise ValueError(f"LoRA {path}: {key} has no lora_B")
        pairs[name] = (state[key], up, state.get(f"{prefix}.lora_B.bias"))
    if not pairs:
        raise ValueError(f"LoRA {path}: no LoRA weights in the file")
    return pairs


def _alpha(meta: dict[str, Any], name: str, rank: int) -> float:
    for pattern, value in (meta.get("alpha_pattern") or {}).items():
        if re.fullmatch(rf"(.*\.)?({pattern})", name):
            return float(value)
    if "lora_alpha" in meta:
        return float(meta["lora_alpha"])
    return float(rank)  # no metadata: the diffusers/PEFT convention W + B @ A


def fuse_loras(transformer: nn.Module, transformer_2: nn.Module | None, loras: tuple[LoraSpec, ...]) -> int:
    """Fuse each LoRA into the expert(s) it names: `both` is every expert, `high_noise` is
    `transformer`, `low_noise` is `transformer_2`. Returns the layers changed in all."""
    changed = 0
    for spec in loras:
        targets = {
            "both": [transformer, transformer_2],
            "high_noise": [transformer],
            "low_noise": [transformer_2],
        }[spec.expert]
        for model in targets:
            if model is not None:
                changed += fuse_lora(model, spec)
    return changed
