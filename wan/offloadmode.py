"""The `offload` modes and the combinations they refuse, torch-free: the models config checks them
at load (services.models_config) with the same words as the model does (wan.offload)."""

from __future__ import annotations

from typing import Literal, get_args

OffloadMode = Literal["none", "experts", "model", "blocks"]
OFFLOAD_MODES: tuple[str, ...] = get_args(OffloadMode)


def offload_refusal(mode: str, *, fsdp: bool, fp8: bool = False) -> str | None:
    """Why `mode` cannot run with these settings, or None. `fsdp`: sharded over more than one rank."""
    if mode not in OFFLOAD_MODES:
        return f"offload must be one of {list(OFFLOAD_MODES)}, got {mode!r}"
    if mode != "none" and fsdp:
        return "offload and fsdp exclude each other: FSDP already keeps only a shard per device"
    if mode == "blocks" and fp8:
        # torchao's float8 weights are tensor subclasses the block swap does not copy or pin.
        return "offload = blocks and fp8 exclude each other: the streamed blocks stay in bf16"
    return None


def check_offload(mode: str, *, fsdp: bool, fp8: bool = False) -> OffloadMode:
    refusal = offload_refusal(mode, fsdp=fsdp, fp8=fp8)
    if refusal:
        raise ValueError(refusal)
    return mode  # type: ignore[return-value]
