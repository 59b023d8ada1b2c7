"""Parallel reads of a local file, straight into the memory the bytes are meant for.

A file is read in chunks by a few threads at once (a deeper queue for the disk). Each chunk goes
either into its place in the buffer that will hold the tensors (host memory) or, for a device,
into one of a few pinned staging buffers that the caller copies to the device and hands back.
Reads use O_DIRECT where the filesystem allows it: the disk writes into that memory by DMA, with no
page-cache copy on the way, so a cold start reads at the disk's speed and leaves host memory to the
model. A filesystem that refuses O_DIRECT (tmpfs, some FUSE mounts) is read through the page cache.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

import torch

ALIGN = 4096  # O_DIRECT wants the address, the offset and the length aligned to the logical block
THREADS = 8

Chunk = tuple[int, int]  # (offset in the file, length)
Dest = Callable[[int], torch.Tensor | None]  # chunk index -> where it goes (None: a staging buffer)
Read = Callable[[torch.Tensor, int, int], None]  # (into, offset, length)


def reader_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(THREADS, thread_name_prefix="ckpt-read")


def round_up(n: int, multiple: int = ALIGN) -> int:
    return -(-n // multiple) * multiple


def plan_chunks(size: int, chunk_bytes: int) -> list[Chunk]:
    """Consecutive chunks covering a file of `size` bytes; every chunk starts aligned."""
    if chunk_bytes % ALIGN:
        raise ValueError(f"chunk size {chunk_bytes} must be a multiple of {ALIGN}")
    return [(offset, min(chunk_bytes, size - offset)) for offset in range(0, size, chunk_bytes)]


def aligned_empty(n: int, *, pin: bool = False) -> torch.Tensor:
    """`n` bytes (uint8) starting at an ALIGN boundary, so O_DIRECT can read into them."""
    if pin:  # cudaHostAlloc hands out page-aligned blocks; padding would double the cached block size
        block = torch.empty(n, dtype=torch.uint8, pin_memory=True)
        if block.data_ptr() % ALIGN == 0:
            return block
    block = torch.empty(n + ALIGN, dtype=torch.uint8, pin_memory=pin)
    skip = -block.data_ptr() % ALIGN
    return block[skip : skip + n]


class LocalFile:
    """A local file open for positioned reads from many threads."""

    def __init__(self, path: str | Path) -> None:
        self.name = str(path)
        self.fd = os.open(path, os.O_RDONLY)
        self.direct_fd: int | None = None
        with contextlib.suppress(OSError):  # not supported here: the page cache it is
            self.direct_fd = os.open(path, os.O_RDONLY | os.O_DIRECT)

    def close(self) -> None:
        for fd in (self.fd, self.direct_fd):
            if fd is not None:
                os.close(fd)

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def read_into(self, into: torch.Tensor, offset: int, length: int) -> None:
        """Read `length` bytes at `offset` into the start of `into` (which may be longer: O_DIRECT
        rounds the last read of a file up to a whole block)."""
        memory = memoryview(into.numpy()).cast("B")
        done = 0
        while done < length:
            fd, want = self._fd_for(into.data_ptr() + done, offset + done, length - done, len(memory) - done)
            try:
                got = os.preadv(fd, [memory[done : done + want]], offset + done)
            except OSError as exc:
                if fd != self.direct_fd or exc.errno != errno.EINVAL:
                    raise
                self._drop_direct()  # the filesystem took the open but refuses the read
                continue
            if not got:
                raise OSError(f"{self.name}: truncated (wanted {length} bytes at {offset})")
            done += got

    def _fd_for(self, address: int, offset: int, length: int, room: int) -> tuple[int, int]:
        if self.direct_fd is not None and not (address % ALIGN or offset % ALIGN) and round_up(length) <= room:
            return self.direct_fd, round_up(length)
        return self.fd, length

    def _drop_direct(self) -> None:
        if self.direct_fd is not None:
            os.close(self.direct_fd)
            self.direct_fd = None


def stream_chunks(
    read: Read, chunks: list[Chunk], dest: Dest, pool: ThreadPoolExecutor
) -> Iterator[tuple[int, torch.Tensor]]:
    """Read every chunk on the pool's threads; yield (index, bytes) as each one completes.

    Where `dest(i)` is None the chunk is read into a staging buffer (pinned when CUDA is there),
    valid until the consumer asks for the next chunk: then it is reused."""
    slots = _Slots(THREADS + 1, max((n for _, n in chunks), default=0))

    def work(i: int) -> tuple[int, torch.Tensor, bool]:
        target = dest(i)
        staged = target is None
        buffer = slots.take() if staged else target
        assert buffer is not None
        try:
            read(buffer, *chunks[i])
        except BaseException:
            if staged:
                slots.give(buffer)
            raise
        return i, buffer, staged

    futures: list[Future[tuple[int, torch.Tensor, bool]]] = [pool.submit(work, i) for i in range(len(chunks))]
    try:
        for future in as_completed(futures):
            i, buffer, staged = future.result()
            yield i, buffer[: chunks[i][1]]
            if staged:
                slots.give(buffer)
    finally:
        for future in futures:
            future.cancel()
        slots.close()  # a thread waiting for a slot gives up instead of holding the pool
        for future in futures:
            if not future.cancelled():
                future.exception()  # wait: no read may still write into memory after we return


class _Slots:
    """A few staging buffers, allocated on first use; `take` blocks until one is free."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size
        self.free: list[torch.Tensor] = []
        self.made = 0
        self.closed = False
        self.cond = threading.Condition()

    def take(self) -> torch.Tensor:
        with self.cond:
            while not self.free and self.made >= self.count and not self.closed:
                self.cond.wait()
            if self.closed:
                raise RuntimeError("read abandoned")
            if self.free:
                return self.free.pop()
            self.made += 1
        return aligned_empty(round_up(self.size), pin=torch.cuda.is_available())

    def give(self, buffer: torch.Tensor) -> None:
        with self.cond:
            self.free.append(buffer)
            self.cond.notify()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()
