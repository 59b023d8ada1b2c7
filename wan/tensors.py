"""Read a safetensors file into memory with one sequential read and no second copy.

`safetensors.torch.load_file` on the CPU hands back tensors over a memory map: nothing is read
until first use, so the first denoising step would pay the disk (and the page cache may drop it
again). Here each file is read once into one owned buffer and the tensors are views into it.
Large files are read by a few threads at once: the disk gets a deeper queue and the page faults
of the fresh buffer are spread over cores.
"""

from __future__ import annotations

import json
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import torch

_DTYPES = {
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
_CHUNK = 64 << 20
_READERS = 4


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of `path`, resident in memory, sharing one buffer."""
    with open(path, "rb", buffering=0) as f:
        (header_len,) = struct.unpack("<Q", _read_exact(f, 8))
        header = json.loads(_read_exact(f, header_len))
        header.pop("__metadata__", None)
        data = torch.empty(os.fstat(f.fileno()).st_size - 8 - header_len, dtype=torch.uint8)
        _read_into(f.fileno(), 8 + header_len, memoryview(data.numpy()).cast("B"), str(path))
    return {name: _view(data, info) for name, info in header.items()}


def _view(data: torch.Tensor, info: dict) -> torch.Tensor:
    dtype = _DTYPES[info["dtype"]]
    begin, end = info["data_offsets"]
    raw = data[begin:end]
    size = torch.empty((), dtype=dtype).element_size()
    if begin % size:  # safetensors does not promise alignment; a misaligned tensor gets its own copy
        raw = raw.clone()
    return raw.view(dtype).reshape(info["shape"])


def _read_exact(f: BinaryIO, n: int) -> bytes:
    chunk = f.read(n)
    if len(chunk) != n:
        raise OSError(f"{f.name}: truncated safetensors file")
    return chunk


def _read_into(fd: int, start: int, view: memoryview, name: str) -> None:
    chunks = range(0, len(view), _CHUNK)

    def read_chunk(offset: int) -> None:
        part = view[offset : offset + _CHUNK]
        done = 0
        while done < len(part):
            n = os.preadv(fd, [part[done:]], start + offset + done)
            if not n:
                raise OSError(f"{name}: truncated safetensors file")
            done += n

    if len(chunks) == 1:
        read_chunk(0)
        return
    with ThreadPoolExecutor(max_workers=_READERS) as pool:
        list(pool.map(read_chunk, chunks))
