"""One rank of the gang-loading tests (run by `wan.distributed.spawn_local` in a fresh process).

Rank 1 is handed checkpoint paths that do not exist: it can only have its weights from rank 0's
broadcasts. Each rank writes `<out>/<scenario>.rank<R>.json`; rank 0 also its frames.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from tests.wan.support import tiny_input, tiny_preset
from wan.checkpoint import open_checkpoint
from wan.distributed import destroy_group, init_group
from wan.layout import LayoutError
from wan.model import WanModel

TASK = "t2v-A14B"


def state_digest(model: WanModel) -> str:
    """sha256 over every parameter and buffer of every component, in name order, bytes as stored."""
    digest = hashlib.sha256()
    comps = model.components
    for part in (comps.transformer, comps.transformer_2, comps.text_encoder, comps.vae):
        if part is None:
            continue
        for name, tensor in sorted({**dict(part.named_parameters()), **dict(part.named_buffers())}.items()):
            tensor = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            digest.update(name.encode() + str(tensor.dtype).encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def io_counters() -> dict[str, int]:
    lines = Path("/proc/self/io").read_text().splitlines()
    return {key: int(value) for key, value in (line.split(": ") for line in lines)}


def run(rank: int, world_size: int, port: int, payload: dict) -> None:
    torch.set_num_threads(1)
    out = Path(payload["out"])
    ctx = init_group("127.0.0.1", port, rank, world_size)
    ckpt = payload["ckpt"] if rank == 0 else payload["missing"]
    try:
        WanModel.load(ckpt, tiny_preset(TASK), parallel=ctx)  # imports and first calls: not measured
        if rank == 0:
            _drop_from_page_cache(Path(ckpt))  # so even reads through the page cache reach the disk
        before = io_counters()
        model = WanModel.load(ckpt, tiny_preset(TASK), parallel=ctx)
        after = io_counters()
        frames = model.generate(tiny_input(TASK))
        if frames is not None:
            np.save(out / "local.npy", frames)
        seen = {key: after[key] - before[key] for key in ("rchar", "read_bytes")}
        _write(out, "local", rank, {**seen, "digest": state_digest(model)})
        s3 = payload["s3"] if rank == 0 else "s3://no-such-bucket/nothing"
        _write(out, "s3", rank, {"digest": state_digest(WanModel.load(s3, tiny_preset(TASK), parallel=ctx))})
        _write(out, "error", rank, {"error": _load_error(payload["missing"] if rank == 0 else ckpt, ctx)})
        _write(out, "abort", rank, {"error": _reader_fails_mid_load(payload["doomed"] if rank == 0 else ckpt, ctx)})
    finally:
        destroy_group()


def _drop_from_page_cache(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _load_error(ckpt: str, ctx) -> str | None:
    """What loading raises when the reader (rank 0) is handed a checkpoint that is not there."""
    try:
        WanModel.load(ckpt, tiny_preset(TASK), parallel=ctx)
    except LayoutError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _reader_fails_mid_load(ckpt: str, ctx) -> str | None:
    """The reader's file disappears after the manifest: every rank must raise, none may hang."""
    import torch.distributed as dist

    checkpoint = open_checkpoint(ckpt, ctx)
    if ctx.rank == 0:
        Path(ckpt, "vae", "diffusion_pytorch_model.safetensors").unlink()
    dist.barrier()
    try:
        checkpoint.tensors("vae", torch.device("cpu"), lambda _, dtype: dtype)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _write(out: Path, name: str, rank: int, info: dict) -> None:
    (out / f"{name}.rank{rank}.json").write_text(json.dumps(info))
