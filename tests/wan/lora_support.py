"""Random LoRA files for the tiny transformers, in diffusers/PEFT and in the original Wan key names."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "ffn.net.0.proj", "ffn.net.2")
# diffusers name -> the Wan2.2 release's name (what LoRAs trained on the original code use)
ORIGINAL = {"attn1": "self_attn", "attn2": "cross_attn", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "o",
            "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2"}  # fmt: skip


def random_lora(model: nn.Module, rank: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    layers: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.startswith("blocks.") and name.endswith(TARGETS):
            down = torch.randn(rank, module.in_features, generator=gen) * 0.3
            up = torch.randn(module.out_features, rank, generator=gen) * 0.3
            layers[name] = (down, up)
    return layers


def write_diffusers_lora(path: Path, model: nn.Module, *, rank: int = 4, alpha: int = 8, seed: int = 0) -> str:
    """diffusers/PEFT names with PEFT metadata (alpha != rank, so the scale matters)."""
    from diffusers import WanPipeline

    layers = random_lora(model, rank, seed)
    state = {}
    for name, (down, up) in layers.items():
        state[f"{name}.lora_A.weight"], state[f"{name}.lora_B.weight"] = down, up
    metadata = {"r": rank, "lora_alpha": alpha, "target_modules": sorted({n.split(".", 2)[2] for n in layers})}
    path.mkdir(parents=True, exist_ok=True)
    WanPipeline.save_lora_weights(path, transformer_lora_layers=state, transformer_lora_adapter_metadata=metadata)
    return str(path / "pytorch_lora_weights.safetensors")


def write_original_lora(path: Path, model: nn.Module, *, rank: int = 4, alpha: float = 2.0, seed: int = 1) -> str:
    """The original release's names (`diffusion_model.blocks.0.self_attn.q.lora_down.weight`, `.alpha`)."""
    state = {}
    for name, (down, up) in random_lora(model, rank, seed).items():
        _, index, attn, rest = name.split(".", 3)
        key = f"diffusion_model.blocks.{index}.{ORIGINAL[attn] + '.' + ORIGINAL[rest] if attn in ORIGINAL else ''}"
        if attn == "ffn":
            key = f"diffusion_model.blocks.{index}.{ORIGINAL['ffn.' + rest]}"
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
        state[f"{key}.alpha"] = torch.tensor(alpha)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, path)
    return str(path)
