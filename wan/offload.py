"""Expert offloading: the Wan2.2 release's `--offload_model` (and `--t5_cpu`) for one GPU.

An A14B checkpoint holds two 14B experts (about 28 GB each in bf16) but each denoising step runs
only one of them, so an 80 GB GPU can serve it when only the active expert is on the device and
the other waits in host memory. Modes (`offload` in the models config, `wan22 generate --offload`):

- `none`: every module stays on the device (fastest; needs room for both experts).
- `experts`: only the expert that runs is on the device; the other is moved to host memory when
  the boundary step switches experts, before the incoming one is moved in (peak: one expert). The
  last expert stays on the device between jobs.
- `model`: `experts`, plus the text encoder lives and runs on the CPU (`--t5_cpu`), and after the
  last step both experts go back to host memory, so between jobs only the VAE is on the device
  (the release's `offload_model=True`).
- `blocks`: each expert's blocks stay in pinned host memory and stream through the device one
  block at a time, prefetched on a side stream (`wan.blockoffload`): A14B on 24 to 48 GB GPUs.

Moves happen in a forward pre-hook of each expert, so they follow whichever expert diffusers'
loop calls, at exactly the step where it switches. `Placements` records, for every forward, which
expert ran and where each expert was meant to be: on a CPU-only host the device and host memory
are the same, so the record is what a test can check there; the tensors only really move on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from wan.offloadmode import OffloadMode

DEVICE, HOST = "device", "host"


@dataclass
class Placements:
    """What one job did: per forward, the expert that ran and where every expert was; every move."""

    forwards: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)  # (expert, "device" | "host")


class ExpertOffloader:
    """Keeps at most one expert on the device, swapping on demand (see the module docstring)."""

    def __init__(self, experts: dict[str, nn.Module], mode: OffloadMode, device: torch.device) -> None:
        self.experts, self.mode, self.device = experts, mode, torch.device(device)
        self.host = torch.device("cpu")
        self.where = {name: HOST for name in experts}  # loaded into host memory
        self.last = Placements()
        for name, module in experts.items():
            module.register_forward_pre_hook(self._pre_hook(name))

    @property
    def text_encoder_on_cpu(self) -> bool:
        return self.mode == "model"

    @contextlib.contextmanager
    def job(self) -> Iterator[Placements]:
        """One job's denoising; `model` mode parks every expert when it ends (even on cancel)."""
        self.last = Placements()
        try:
            yield self.last
        finally:
            if self.mode == "model":
                for name in self.experts:
                    self._move(name, HOST)
                self._release_cache()

    def _pre_hook(self, name: str) -> Callable[[nn.Module, object], None]:
        def hook(module: nn.Module, args: object) -> None:
            self.activate(name)

        return hook

    def activate(self, name: str) -> None:
        """Make `name` the one expert on the device: the other leaves first, so the peak is one."""
        if self.where[name] != DEVICE:
            for other in self.experts:
                if other != name and self.where[other] == DEVICE:
                    self._move(other, HOST)
            self._release_cache()
            self._move(name, DEVICE)
        self.last.forwards.append((name, dict(self.where)))

    def _move(self, name: str, target: str) -> None:
        if self.where[name] == target:
            return
        self.experts[name].to(self.device if target == DEVICE else self.host)
        self.where[name] = target
        self.last.moves.append((name, target))

    def _release_cache(self) -> None:
        # Hand the freed blocks back so the incoming expert (or the VAE decode) can use them.
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
