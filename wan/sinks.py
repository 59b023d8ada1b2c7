"""Where the bytes of one safetensors file end up on a rank, chunk by chunk.

`HostSink` (tensors in host memory): the file's bytes go into one buffer and the tensors are views
into it; a reader writes each chunk straight into its place and a gloo broadcast receives into it.
`TensorSink` (tensors on a GPU): every tensor is allocated on the device and each chunk is copied
into the tensors it covers, from a pinned staging buffer or from the staging buffer an NCCL
broadcast received into; a tensor is cast as soon as its last byte is in, so a cast costs at most
one tensor's extra memory, never the file's.

Chunks may arrive in any order. Every sink gives `target(i, device)`: where chunk i can be
received on the broadcast's device (a view into the sink itself where possible, else a staging
buffer), and `put(i, data)` takes the chunk from wherever it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wan.readers import Chunk, aligned_empty, round_up
from wan.tensors import FileLayout, TensorInfo, byte_view, view

DtypeOf = Callable[[str, torch.dtype], torch.dtype]  # (tensor name, dtype in the file) -> dtype to keep


class HostSink:
    def __init__(self, layout: FileLayout, chunks: list[Chunk], dtype_of: DtypeOf) -> None:
        self.layout, self.chunks, self.dtype_of = layout, chunks, dtype_of
        self.buffer = aligned_empty(round_up(layout.size))
        self._stages: dict[torch.device, torch.Tensor] = {}

    def host_view(self, i: int) -> torch.Tensor:
        offset, length = self.chunks[i]
        return self.buffer[offset : min(offset + round_up(length), len(self.buffer))]

    def target(self, i: int, device: torch.device) -> torch.Tensor:
        if device.type == "cpu":
            offset, length = self.chunks[i]
            return self.buffer[offset : offset + length]
        return _stage(self._stages, device, self.chunks)[: self.chunks[i][1]]

    def put(self, i: int, data: torch.Tensor) -> None:
        offset, length = self.chunks[i]
        place = self.buffer[offset : offset + length]
        if data.device.type != "cpu" or data.data_ptr() != place.data_ptr():
            place.copy_(data)

    def tensors(self) -> dict[str, torch.Tensor]:
        out, kept, cast_bytes = {}, [], 0
        for info in self.layout.tensors:
            tensor = view(self.buffer, info)
            target = self.dtype_of(info.name, info.dtype)
            if target != info.dtype:
                tensor, cast_bytes = tensor.to(target), cast_bytes + info.nbytes
            else:
                kept.append(info)
            out[info.name] = tensor
        # A view keeps the whole buffer alive. Where more of the file was cast than kept (an fp32
        # checkpoint loaded in bf16), copy the kept few out so the buffer can go.
        if cast_bytes > sum(info.nbytes for info in kept):
            for info in kept:
                out[info.name] = out[info.name].clone()
        return out


class TensorSink:
    def __init__(self, layout: FileLayout, chunks: list[Chunk], dtype_of: DtypeOf, device: torch.device) -> None:
        self.layout, self.chunks, self.dtype_of, self.device = layout, chunks, dtype_of, device
        self.out = {t.name: torch.empty(t.shape, dtype=t.dtype, device=device) for t in layout.tensors}
        self.left = {t.name: t.nbytes for t in layout.tensors}
        self.pieces = _pieces(layout.tensors, chunks)
        self._stages: dict[torch.device, torch.Tensor] = {}
        for info in layout.tensors:
            if not info.nbytes:
                self._finish(info)

    def host_view(self, i: int) -> None:
        return None  # read into a pinned staging buffer, then copied in by `put`

    def target(self, i: int, device: torch.device) -> torch.Tensor:
        return _stage(self._stages, device, self.chunks)[: self.chunks[i][1]]

    def put(self, i: int, data: torch.Tensor) -> None:
        done = []
        for info, src, dst in self.pieces[i]:
            place = byte_view(self.out[info.name])[dst : dst + src.stop - src.start]
            place.copy_(data[src], non_blocking=True)
            self.left[info.name] -= src.stop - src.start
            if not self.left[info.name]:
                done.append(info)
        if data.device.type == "cpu" and self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # the staging buffer is reused next
        for info in done:
            self._finish(info)

    def _finish(self, info: TensorInfo) -> None:
        target = self.dtype_of(info.name, info.dtype)
        if target != info.dtype:
            self.out[info.name] = self.out[info.name].to(target)

    def tensors(self) -> dict[str, torch.Tensor]:
        missing = [name for name, left in self.left.items() if left]
        if missing:
            raise RuntimeError(f"tensors not fully received: {missing[:5]}")
        return self.out


def _pieces(tensors: tuple[TensorInfo, ...], chunks: list[Chunk]) -> list[list[tuple[TensorInfo, slice, int]]]:
    """For each chunk: (tensor, bytes of the chunk, offset in the tensor's bytes) of every tensor it covers."""
    pieces: list[list[tuple[TensorInfo, slice, int]]] = [[] for _ in chunks]
    filled = [info for info in tensors if info.nbytes]  # sorted by offset and disjoint
    first = 0
    for i, (offset, length) in enumerate(chunks):
        end = offset + length
        while first < len(filled) and filled[first].end <= offset:
            first += 1
        for info in filled[first:]:
            if info.begin >= end:
                break
            lo, hi = max(info.begin, offset), min(info.end, end)
            pieces[i].append((info, slice(lo - offset, hi - offset), lo - info.begin))
    return pieces


def _stage(stages: dict[torch.device, torch.Tensor], device: torch.device, chunks: list[Chunk]) -> torch.Tensor:
    # One staging buffer per device is enough: copies into and out of it are ordered on one stream.
    if device not in stages:
        stages[device] = torch.empty(max(n for _, n in chunks), dtype=torch.uint8, device=device)
    return stages[device]


def make_sink(
    layout: FileLayout, chunks: list[Chunk], dtype_of: DtypeOf, device: torch.device
) -> HostSink | TensorSink:
    if device.type == "cpu":
        return HostSink(layout, chunks, dtype_of)
    return TensorSink(layout, chunks, dtype_of, device)
