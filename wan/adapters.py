"""LoRA adapters chosen per job, switched on the resident experts between jobs without reloading
the base. Two ways, per task (`lora_switch`):

- `fuse`: the adapters are fused into the weights (`W + s * B @ A`, as at load), so a step costs
  what a base step costs. The first time a layer is fused its base weight is copied to host
  memory (pinned on GPUs); going back to the base copies it back, bit for bit. A switch costs a
  host-to-device copy of the layers it touches plus the fuse.
- `runtime`: the weights stay the base's; a forward hook on each adapted layer adds
  `s * B(A x)`. A switch only moves the small A and B to the device; every step pays the extra
  low-rank matmuls. The way that works with FSDP and FP8 weights, which cannot be fused in place.

Adapter files are read once and kept in host memory, least recently used first out past a byte
budget. A job keeps the adapters of the job before it when it asks for the same ones: no switch.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import structlog
import torch
from torch import nn

from wan.job import AdapterChoice
from wan.lora import LayerDelta, check_layers, experts_for, fuse_delta, read_deltas

log = structlog.get_logger("wan22.adapters")

SwitchMode = Literal["fuse", "runtime"]


def switch_mode(setting: str, *, fsdp: bool, fp8: bool) -> SwitchMode:
    """`auto`: fuse, unless the weights are FSDP shards or FP8, which only `runtime` can adapt."""
    if setting not in ("auto", "fuse", "runtime"):
        raise ValueError(f"lora_switch must be auto, fuse or runtime, got {setting!r}")
    if setting == "fuse" and (fsdp or fp8):
        raise ValueError("lora_switch = fuse needs plain weights: with fsdp or fp8 use runtime (or auto)")
    if setting == "auto":
        return "runtime" if fsdp or fp8 else "fuse"
    return "runtime" if setting == "runtime" else "fuse"


class AdapterFiles:
    """Read adapter files by path, kept in host memory up to `budget_bytes` (LRU)."""

    def __init__(self, budget_bytes: int, reader: Callable[[str], dict[str, LayerDelta]] = read_deltas) -> None:
        self.budget, self.reader = budget_bytes, reader
        self._files: OrderedDict[str, tuple[dict[str, LayerDelta], int]] = OrderedDict()
        self.reads = 0

    def get(self, path: str) -> dict[str, LayerDelta]:
        if path in self._files:
            self._files.move_to_end(path)
            return self._files[path][0]
        deltas = self.reader(path)
        self.reads += 1
        self._files[path] = (deltas, sum(d.nbytes for d in deltas.values()))
        while len(self._files) > 1 and self.held_bytes > self.budget:
            self._files.popitem(last=False)
        return deltas

    @property
    def held_bytes(self) -> int:
        return sum(size for _, size in self._files.values())


class AdapterSwitcher:
    """Keeps the experts' adapters those of the current job."""

    def __init__(self, experts: tuple[nn.Module, nn.Module | None], mode: SwitchMode, files: AdapterFiles) -> None:
        self.experts, self.mode, self.files = experts, mode, files
        self.current: tuple[AdapterChoice, ...] = ()
        self._backups: dict[int, tuple[nn.Module, torch.Tensor, torch.Tensor | None]] = {}
        self._fused: set[int] = set()  # layers the current adapters changed
        self._hooks: list[Any] = []
        self.last_switch_s = 0.0

    def switch(self, wanted: tuple[AdapterChoice, ...]) -> bool:
        """Make `wanted` the active adapters; False when they already are. A file that cannot be
        read or does not fit the model raises ValueError before any weight changes (the adapters
        before stay active); a failure while applying goes back to the base weights."""
        if wanted == self.current:
            return False
        started = time.perf_counter()
        plan = [(choice, model, self.files.get(choice.path)) for choice in wanted for model in self._targets(choice)]
        layers = [check_layers(model, deltas, choice.path) for choice, model, deltas in plan]  # all, before any change
        with torch.no_grad():
            self._to_base()
            try:
                for (choice, _, deltas), found in zip(plan, layers, strict=True):
                    self._apply(choice, deltas, found)
            except BaseException:
                self._to_base()
                raise
        self.current = wanted
        self.last_switch_s = time.perf_counter() - started
        log.info("adapters.switched", adapters=[c.name for c in wanted], mode=self.mode, s=round(self.last_switch_s, 4))
        return True

    def _targets(self, choice: AdapterChoice) -> list[nn.Module]:
        transformer, transformer_2 = self.experts
        return experts_for(choice.expert, transformer, transformer_2)

    def _to_base(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for key in self._fused:
            layer, weight, bias = self._backups[key]
            layer.weight.copy_(weight, non_blocking=True)
            if bias is not None:
                layer.bias.copy_(bias, non_blocking=True)
        self._fused.clear()
        self.current = ()

    def _apply(self, choice: AdapterChoice, deltas: dict[str, LayerDelta], layers: dict[str, nn.Module]) -> None:
        for name, delta in deltas.items():
            layer = layers[name]
            if self.mode == "fuse":
                self._back_up(layer)
                self._fused.add(id(layer))
                fuse_delta(layer, delta, choice.scale)
            else:
                self._hooks.append(layer.register_forward_hook(_low_rank_hook(layer, delta, choice.scale)))

    def _back_up(self, layer: nn.Module) -> None:
        """The base weight, copied once to host memory (pinned where a GPU copies it back)."""
        if id(layer) in self._backups:
            return
        weight = layer.weight.detach()
        pin = weight.is_cuda
        copy = weight.to("cpu", copy=True)
        bias = layer.bias.detach().to("cpu", copy=True) if getattr(layer, "bias", None) is not None else None
        self._backups[id(layer)] = (layer, copy.pin_memory() if pin else copy, bias)


def _low_rank_hook(layer: nn.Module, delta: LayerDelta, scale: float) -> Callable[..., torch.Tensor]:
    weight = layer.weight
    tensors = {"down": delta.down, "up": delta.up, "bias": delta.bias}
    placed = {k: t.to(weight.device, weight.dtype) if t is not None else None for k, t in tensors.items()}
    factor = scale * delta.alpha_scale

    def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        if placed["down"] is not None and placed["down"].device != x.device:  # the expert was offloaded or moved
            placed.update({k: t.to(x.device) if t is not None else None for k, t in placed.items()})
        update = nn.functional.linear(nn.functional.linear(x, placed["down"]), placed["up"], placed["bias"])
        return output + factor * update

    return hook
