"""Block offload (`offload = "blocks"`): A14B on a 24 to 48 GB GPU, as SGLang's layerwise offload.

Each expert's transformer blocks (all but a few hundred MB of its 28 GB in bf16) live in pinned
host memory; the embedders, the output head and the VAE stay on the device. While a block runs,
the next `prefetch` blocks are copied in on a side stream, so the copy of block i+1 overlaps the
compute of block i; a block's device copy is dropped as soon as it has run, and the loop never
runs more than one block ahead of the GPU. The peak is therefore the resident parts plus
`2 + prefetch` blocks (the running one, the one still queued, the prefetched; about 0.7 GB each for
A14B). The text encoder runs on the CPU, as with `model` (`--t5_cpu`).

Which block comes next is known ahead: blocks run in order within a forward, and the model hands
`job()` the expert of every forward of the job (steps x passes, from the boundary and the
guidance), so the last block of the last high-noise forward prefetches the low-noise expert's first
block. A forward the plan did not foresee still runs: its first block is copied in on the spot and
counted as a miss.

The blocks are driven from the expert's `blocks` list (iterating it inside a job fetches, waits
for and releases each block), not from hooks on the blocks, so a block compiled by
`compile_blocks` stays one graph and the modules keep their names (LoRA keys, state dicts).
A block's parameters are swapped in place (`param.data`), so whatever changes the host weights
between jobs (a fused LoRA) is what the next job copies in.

On a CPU host "device" and "host" are the same memory; the copies are still made (a clone stands
in for the device copy), so a test can see by data pointer which blocks are in, and that the
frames equal those of `none`.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

Key = tuple[str, int]  # (expert, block index)
MAX_PREFETCH = 4


@dataclass
class BlockTrace:
    """One job, in order: each fetch (copy issued), each use with the blocks resident while it
    ran, each release; misses are blocks a use found not fetched. `peak_bytes`: the most bytes of block
    copies on the device at once."""

    fetches: list[Key] = field(default_factory=list)
    uses: list[tuple[Key, frozenset[Key]]] = field(default_factory=list)
    releases: list[Key] = field(default_factory=list)
    misses: list[Key] = field(default_factory=list)
    peak_bytes: int = 0


@dataclass
class _Resident:
    """A block's device copy: its tensors, the host tensors they stand for, the copy's event."""

    device: dict[str, torch.Tensor]
    host: dict[str, torch.Tensor]
    ready: torch.cuda.Event | None
    nbytes: int


class OffloadedBlocks(nn.ModuleList):
    """An expert's blocks; iterated during a job, each block is on the device while it runs."""

    def __init__(self, blocks: nn.ModuleList, offloader: BlockOffloader, expert: str) -> None:
        super().__init__(list(blocks))
        self._offloader, self._expert = offloader, expert

    def __iter__(self) -> Iterator[nn.Module]:
        if not self._offloader.active:  # outside a job (sharding, adapters, tests): a plain list
            yield from super().__iter__()
            return
        for index, block in enumerate(super().__iter__()):
            self._offloader.enter(self._expert, index)
            try:
                yield block
            finally:
                self._offloader.leave(self._expert, index)


def block_tensors(block: nn.Module) -> dict[str, nn.Parameter | torch.Tensor]:
    return {**dict(block.named_parameters()), **dict(block.named_buffers())}


class BlockOffloader:
    """Streams the blocks of `experts` (name → transformer) through the device (module docstring)."""

    text_encoder_on_cpu = True

    def __init__(self, experts: dict[str, nn.Module], device: torch.device, prefetch: int = 1) -> None:
        if not 1 <= prefetch <= MAX_PREFETCH:
            raise ValueError(f"offload_prefetch must be 1 to {MAX_PREFETCH} blocks, got {prefetch}")
        self.device, self.prefetch = torch.device(device), prefetch
        self.cuda = self.device.type == "cuda"
        self.copy_stream = torch.cuda.Stream(self.device) if self.cuda else None
        self.blocks: dict[str, list[nn.Module]] = {}
        for name, expert in experts.items():
            self._place(expert)
            self.blocks[name] = list(expert.blocks)
            expert.blocks = OffloadedBlocks(expert.blocks, self, name)
        # The tensor objects stay; only their `.data` moves, so each block's are looked up once.
        self.tensors: dict[Key, dict[str, torch.Tensor]] = {
            (name, index): block_tensors(block)
            for name, blocks in self.blocks.items()
            for index, block in enumerate(blocks)
        }
        self.active = False
        self.resident: dict[Key, _Resident] = {}
        self.last = BlockTrace()
        self._plan: list[str] = []
        self._forward = -1  # index into the plan of the forward now running
        self._wanted: set[Key] = set()  # the blocks after the one running, in plan order
        self._done: collections.deque[torch.cuda.Event] = collections.deque()  # blocks queued, not run yet

    def _place(self, expert: nn.Module) -> None:
        """Everything but the blocks to the device; the blocks' tensors pinned in host memory."""
        for name, tensor in [*expert.named_parameters(), *expert.named_buffers()]:
            if name.startswith("blocks."):
                if self.cuda:
                    tensor.data = tensor.data.pin_memory()  # async copies need page-locked memory
            else:
                tensor.data = tensor.data.to(self.device)

    @contextlib.contextmanager
    def job(self, plan: Sequence[str] = ()) -> Iterator[BlockTrace]:
        """One job's denoising; `plan` names the expert of each forward. Every block copy is
        dropped when it ends, even on a cancel or an error."""
        self.last, self._plan, self._forward, self._wanted = BlockTrace(), list(plan), -1, set()
        self._done.clear()
        self.active = True
        try:
            for key in self._upcoming(0, self._plan[0], -1) if self._plan else ():
                self._fetch(key)  # the first blocks come in while the prompt is encoded
            yield self.last
        finally:
            self.active = False
            for key in list(self.resident):
                self._drop(key)

    # ---- the block loop ------------------------------------------------------------------

    def enter(self, expert: str, index: int) -> None:
        """Before block `index` of `expert` runs: its copy in place, the next ones on their way."""
        if index == 0:
            self._next_forward(expert)
        key = (expert, index)
        if key not in self.resident:
            self.last.misses.append(key)
            self._fetch(key)
        self._swap_in(key)
        self._hold_back()
        self._wanted = set(self._upcoming(self._forward, expert, index))
        for upcoming in self._wanted - set(self.resident):
            self._fetch(upcoming)
        self.last.uses.append((key, frozenset(self.resident)))  # what is in while the block runs

    def leave(self, expert: str, index: int) -> None:
        """After the block ran: back to its host tensors; the device copy is freed unless the
        block is among the next ones (an expert with no more blocks than `prefetch`)."""
        key = (expert, index)
        if self.cuda:
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(self.device))
            self._done.append(done)
        if key in self._wanted:
            self._swap_out(key)
        else:
            self._drop(key)

    def _hold_back(self) -> None:
        """Kernels launch asynchronously, so the loop could run many blocks ahead of the GPU,
        each fetch allocating while the copies it released still wait for their kernels: device
        memory would grow towards every block. Waiting until the block before the previous one has
        run bounds that to one block in flight, and the GPU never idles (the previous block is
        still queued)."""
        while len(self._done) > 1:
            self._done.popleft().synchronize()

    def _next_forward(self, expert: str) -> None:
        self._forward += 1
        if self._forward >= len(self._plan) or self._plan[self._forward] != expert:
            # Not the forward foreseen: from here on, assume this expert until the plan ends.
            self._plan[self._forward :] = [expert]

    def _upcoming(self, forward: int, expert: str, index: int) -> Iterator[Key]:
        """The `prefetch` blocks after block `index` of forward `forward`, in the plan's order."""
        count = 0
        while count < self.prefetch:
            index += 1
            if index == len(self.blocks[expert]):
                forward += 1
                if forward >= len(self._plan):
                    return
                expert, index = self._plan[forward], 0
            count += 1
            yield (expert, index)

    # ---- copies --------------------------------------------------------------------------

    def _fetch(self, key: Key) -> None:
        host = {name: t.data for name, t in self.tensors[key].items()}
        if self.copy_stream is not None:
            # New allocations only, so no wait on the compute stream: the copy overlaps the block
            # running now. `record_stream` in `_swap_in` keeps freed copies until compute is done.
            with torch.cuda.stream(self.copy_stream):
                device = {name: t.to(self.device, non_blocking=True) for name, t in host.items()}
                ready = torch.cuda.Event()
                ready.record(self.copy_stream)
        else:
            device, ready = {name: t.clone() for name, t in host.items()}, None  # the stand-in copy
        nbytes = sum(t.numel() * t.element_size() for t in device.values())
        self.resident[key] = _Resident(device, host, ready, nbytes)
        self.last.fetches.append(key)
        self.last.peak_bytes = max(self.last.peak_bytes, sum(r.nbytes for r in self.resident.values()))

    def _swap_in(self, key: Key) -> None:
        resident = self.resident[key]
        if resident.ready is not None:
            compute = torch.cuda.current_stream(self.device)
            compute.wait_event(resident.ready)
            for tensor in resident.device.values():
                tensor.record_stream(compute)  # freed only once the compute stream has used it
        for name, tensor in self.tensors[key].items():
            tensor.data = resident.device[name]

    def _swap_out(self, key: Key) -> None:
        for name, tensor in self.tensors[key].items():
            tensor.data = self.resident[key].host[name]

    def _drop(self, key: Key) -> None:
        if key not in self.resident:
            return
        self._swap_out(key)
        del self.resident[key]
        self.last.releases.append(key)
