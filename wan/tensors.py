"""The safetensors format: the header of a file, and its tensors as views into the file's bytes.

A file is 8 bytes of header length (little endian), a JSON header naming every tensor's dtype,
shape and byte range, then the data. The loader reads the whole file into one buffer (`wan.sinks`)
and the tensors are views into it, so nothing is copied after the read.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from math import prod

import torch

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
MAX_HEADER = 100 << 20  # the format's own limit


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int  # byte offsets in the file (not in the data section)
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class FileLayout:
    """Where every tensor of one safetensors file lies; the file is `size` bytes."""

    size: int
    tensors: tuple[TensorInfo, ...]


def header_length(first8: bytes, name: str) -> int:
    if len(first8) != 8:
        raise ValueError(f"{name}: truncated safetensors file")
    (length,) = struct.unpack("<Q", first8)
    if length > MAX_HEADER:
        raise ValueError(f"{name}: safetensors header of {length} bytes is over the format's limit")
    return int(length)


def parse_layout(head: bytes, size: int, name: str) -> FileLayout:
    """The layout from the file's first 8 + header length bytes, checked against the file size."""
    length = header_length(head[:8], name)
    if len(head) < 8 + length:
        raise ValueError(f"{name}: truncated safetensors header")
    header = json.loads(head[8 : 8 + length])
    header.pop("__metadata__", None)
    start = 8 + length
    infos = tuple(_info(key, value, start, size, name) for key, value in header.items())
    return FileLayout(size=size, tensors=tuple(sorted(infos, key=lambda t: t.begin)))


def _info(key: str, value: dict, start: int, size: int, name: str) -> TensorInfo:
    if value["dtype"] not in DTYPES:
        raise ValueError(f"{name}: tensor {key} has dtype {value['dtype']}, which this loader does not read")
    dtype = DTYPES[value["dtype"]]
    begin, end = (start + int(offset) for offset in value["data_offsets"])
    shape = tuple(int(d) for d in value["shape"])
    if not start <= begin <= end <= size or end - begin != prod(shape) * dtype.itemsize:
        raise ValueError(f"{name}: tensor {key} has byte range {value['data_offsets']} that does not fit")
    return TensorInfo(key, dtype, shape, begin, end)


def view(buffer: torch.Tensor, info: TensorInfo) -> torch.Tensor:
    """Tensor `info` as a view into `buffer`, which holds the whole file's bytes (uint8)."""
    raw = buffer[info.begin : info.end]
    size = info.dtype.itemsize
    if raw.data_ptr() % size or raw.storage_offset() % size:  # the format does not promise alignment: copy it
        raw = raw.clone()
    return raw.view(info.dtype).reshape(info.shape)


def byte_view(tensor: torch.Tensor) -> torch.Tensor:
    """The bytes of a contiguous tensor, as a flat uint8 tensor sharing its memory."""
    return tensor.reshape(-1).view(torch.uint8)
