"""Reads a diffusers-layout Wan2.2 checkpoint into resident modules, fast.

diffusers' own `from_pretrained` needs `accelerate` for Wan transformers (they keep some modules in
fp32, which it only supports on the low-memory path) and otherwise random-initialises every weight
before overwriting it. Here a model is built on the meta device and its safetensors are assigned
straight in, read once per node and shared over the gang (`wan.checkpoint`); a cast happens only
where the dtype differs. The text encoder is handed to transformers' `from_pretrained` as a state
dict, so its own loading rules (tied embeddings, fp32 modules) apply to the same tensors.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from wan.checkpoint import Checkpoint
from wan.layout import LayoutError
from wan.sinks import DtypeOf


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


def load_diffusers_model(
    cls: type, ckpt: Checkpoint, folder: str, *, dtype: torch.dtype, device: torch.device
) -> nn.Module:
    """Build `cls` from `folder`/config.json on the meta device and assign its weights in place."""
    config = ckpt.json(f"{folder}/config.json")
    with torch.device("meta"):
        model = cls.from_config(config)
    model.load_state_dict(ckpt.tensors(folder, device, diffusers_dtype(cls, dtype)), strict=True, assign=True)
    _rebuild_meta_buffers(model, device)
    model.requires_grad_(False)
    return model.eval()


def diffusers_dtype(cls: type, dtype: torch.dtype) -> DtypeOf:
    keep_fp32 = tuple(getattr(cls, "_keep_in_fp32_modules", None) or ())
    return functools.partial(_target_dtype, dtype=dtype, keep_fp32=keep_fp32)


def _target_dtype(name: str, stored: torch.dtype, *, dtype: torch.dtype, keep_fp32: tuple[str, ...]) -> torch.dtype:
    # Same rule as diffusers: modules named in `_keep_in_fp32_modules` stay fp32 (norms, time embedder).
    if not stored.is_floating_point:
        return stored
    return torch.float32 if any(part in keep_fp32 for part in name.split(".")) else dtype


def load_text_encoder(ckpt: Checkpoint, *, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """UMT5 from transformers' `from_pretrained` over tensors this loader read (no second read, no copy
    where the dtype already fits)."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config.from_dict(ckpt.json("text_encoder/config.json"))
    state = ckpt.tensors("text_encoder", device, text_encoder_dtype(dtype))
    model = UMT5EncoderModel.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
    return model.to(device).requires_grad_(False).eval()


def text_encoder_dtype(dtype: torch.dtype) -> DtypeOf:
    from transformers import UMT5EncoderModel

    return functools.partial(_text_dtype, dtype=dtype, kept=_transformers_fp32(UMT5EncoderModel, dtype))


def _transformers_fp32(cls: type, dtype: torch.dtype) -> tuple[str, ...]:
    """The modules transformers keeps in fp32 at `dtype` (its `_get_dtype_plan` rule)."""
    kept: set[str] = set()
    if dtype in (torch.float16, torch.bfloat16):
        kept |= set(getattr(cls, "_keep_in_fp32_modules_strict", None) or ())
    if dtype == torch.float16:
        kept |= set(getattr(cls, "_keep_in_fp32_modules", None) or ())
    return tuple(kept)


def _text_dtype(name: str, stored: torch.dtype, *, dtype: torch.dtype, kept: tuple[str, ...]) -> torch.dtype:
    # Cast early (on the device, one tensor at a time) except where transformers decides otherwise:
    # those stay as stored and transformers casts them itself.
    if not stored.is_floating_point or any(k in name for k in kept):
        return stored
    return dtype


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
    ckpt: Checkpoint,
    *,
    dtype: torch.dtype,
    transformer_device: torch.device,
    text_encoder_device: torch.device,
    vae_device: torch.device,
    vae_dtype: torch.dtype = torch.float32,
) -> Components:
    """Load every component named by model_index.json (the diffusers pipeline layout). Collective."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer

    index = ckpt.json("model_index.json")
    experts = ["transformer"] + (["transformer_2"] if (index.get("transformer_2") or [None])[0] else [])
    plan = {name: (transformer_device, diffusers_dtype(WanTransformer3DModel, dtype)) for name in experts}
    plan["text_encoder"] = (text_encoder_device, text_encoder_dtype(dtype))
    plan["vae"] = (vae_device, diffusers_dtype(AutoencoderKLWan, vae_dtype))
    ckpt.prefetch(plan)  # the bytes arrive while the models are built
    loaded = [
        load_diffusers_model(WanTransformer3DModel, ckpt, name, dtype=dtype, device=transformer_device)
        for name in experts
    ]
    text_encoder = load_text_encoder(ckpt, dtype=dtype, device=text_encoder_device)
    vae = load_diffusers_model(AutoencoderKLWan, ckpt, "vae", dtype=vae_dtype, device=vae_device)
    with ckpt.folder_dir("tokenizer") as folder:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    return Components(
        index=index,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        scheduler=load_scheduler(ckpt.json("scheduler/scheduler_config.json")),
        transformer=loaded[0],
        transformer_2=loaded[1] if len(loaded) > 1 else None,
    )


def load_scheduler(config: dict[str, Any]) -> Any:
    import diffusers

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
