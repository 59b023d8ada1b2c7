"""LoRA adapters: read, checked against a model and fused into its weights (at load time for a
task's own `loras`; wan.adapters switches per-job adapters with the same pieces).

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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class LayerDelta:
    """One layer's low-rank update: `W + scale * alpha_scale * up @ down` (and the bias's)."""

    down: torch.Tensor
    up: torch.Tensor
    bias: torch.Tensor | None
    alpha_scale: float  # PEFT's lora_alpha / r (or / sqrt(r) with rsLoRA)

    @property
    def nbytes(self) -> int:
        tensors = [self.down, self.up] + ([self.bias] if self.bias is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)


def read_deltas(path: str) -> dict[str, LayerDelta]:
    """Every layer update of a LoRA file, by module name; ValueError naming the file when it is
    unreadable or holds anything but LoRA pairs."""
    state, meta = read_lora(path)
    deltas = {}
    for name, (down, up, bias) in _pairs(state, path).items():
        rank = down.shape[0]
        alpha_scale = _alpha(meta, name, rank) / (math.sqrt(rank) if meta.get("use_rslora") else rank)
        deltas[name] = LayerDelta(down, up, bias, alpha_scale)
    return deltas


def check_layers(model: nn.Module, deltas: dict[str, LayerDelta], path: str) -> dict[str, nn.Module]:
    """The model's layers each delta updates; ValueError for names or shapes the model lacks."""
    modules = dict(model.named_modules())
    missing = sorted(name for name in deltas if name not in modules)
    if missing:
        raise ValueError(f"LoRA {path}: no layer named {missing[:3]} in the model (a LoRA for another model?)")
    layers = {name: modules[name] for name in deltas}
    for name, delta in deltas.items():
        shape = (delta.up.shape[0], delta.down.shape[1])
        weight = getattr(layers[name], "weight", None)
        if weight is None or tuple(weight.shape) != shape:
            have = tuple(weight.shape) if weight is not None else None
            raise ValueError(f"LoRA {path}: {name} is {shape}, the model's {have}")
    return layers


def fuse_delta(layer: nn.Module, delta: LayerDelta, scale: float) -> None:
    """`W += scale * B @ A` in fp32, cast back to the weight's dtype."""
    factor = scale * delta.alpha_scale
    weight = layer.weight
    update = delta.up.to(torch.float32) @ delta.down.to(torch.float32)
    weight.copy_((weight.to(torch.float32) + factor * update.to(weight.device)).to(weight.dtype))
    if delta.bias is not None:
        bias = layer.bias
        bias.copy_((bias.to(torch.float32) + factor * delta.bias.to(bias.device)).to(bias.dtype))


def fuse_lora(model: nn.Module, spec: LoraSpec) -> int:
    """Fuse one LoRA file into `model` (a WanTransformer3DModel). Returns the number of layers
    changed; a key that names no layer of the model is an error (a LoRA for another model)."""
    deltas = read_deltas(spec.path)
    layers = check_layers(model, deltas, spec.path)
    with torch.no_grad():
        for name, delta in deltas.items():
            fuse_delta(layers[name], delta, spec.scale)
    return len(deltas)


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


def experts_for(expert: str, transformer: nn.Module, transformer_2: nn.Module | None) -> list[nn.Module]:
    """`both` is every expert, `high_noise` is `transformer`, `low_noise` is `transformer_2`."""
    targets = {"both": [transformer, transformer_2], "high_noise": [transformer], "low_noise": [transformer_2]}
    return [model for model in targets[expert] if model is not None]


def fuse_loras(transformer: nn.Module, transformer_2: nn.Module | None, loras: tuple[LoraSpec, ...]) -> int:
    """Fuse each LoRA into the expert(s) it names. Returns the layers changed in all."""
    return sum(
        fuse_lora(model, spec) for spec in loras for model in experts_for(spec.expert, transformer, transformer_2)
    )
