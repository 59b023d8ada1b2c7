"""FP8 weights and activations (torchao's dynamic float8, per-row scales) on the experts' linear
layers. Needs a CUDA GPU with FP8 tensor cores (compute capability 8.9: Ada, Hopper, Blackwell)
and torchao; anywhere else it is refused at load with the reason, before any weight is touched.
torchao is an optional dependency (`pip install torchao` on the GPU image): it is never pulled in
on CPU hosts.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

MIN_CAPABILITY = (8, 9)


def fp8_unsupported(device: torch.device) -> str | None:
    """Why FP8 cannot run on `device`, or None when it can."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return (
            f"fp8 needs a CUDA GPU with compute capability >= 8.9 (Ada, Hopper, Blackwell); this rank runs on {device}"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return f"fp8 needs compute capability >= 8.9; {name} has {capability[0]}.{capability[1]}"
    if importlib.util.find_spec("torchao") is None:
        return "fp8 needs torchao on the GPU host (pip install torchao)"
    return None


def quantize_fp8(experts: list[nn.Module], device: torch.device) -> None:
    reason = fp8_unsupported(device)
    if reason:
        raise ValueError(reason)
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    for expert in experts:
        # The blocks' linear layers only: the embedders, the output head and the fp32 modules keep their dtype.
        quantize_(expert.blocks, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
