"""Cold load of a few-GB random Wan2.2 checkpoint to a resident model, against a plain read of
the same files in the same run.

    python bench/load.py [--gb 1.5] [--repeats 3] [--dir PATH]

The checkpoint is t2v-A14B-shaped (two experts) with wide transformer blocks sized to about
--gb gigabytes (fp32). Before every measurement the files are dropped from the page cache
(posix_fadvise DONTNEED), so both sides read from the disk. Target: load rate >= 0.5 x raw rate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wan.model import WanModel
from wan.presets import PRESETS
from wan.tiny import TransformerDims, make_tiny

CHUNK = 64 << 20
WIDE = dict(heads=16, head_dim=128, ffn_dim=8192)  # 2048-wide blocks, ~268 MB each in fp32


def build(directory: Path, gigabytes: float) -> None:
    per_block = 4 * (8 * 2048**2 + 2 * 2048 * 8192)  # bytes: attention 8 d^2 + FFN 2 d ffn, fp32
    layers = max(1, round(gigabytes * 1e9 / (2 * per_block)))  # two experts
    make_tiny(directory, "t2v-A14B", dims=TransformerDims(**WIDE, layers=layers))


def files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def drop_cache(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def stream_read(paths: list[Path]) -> float:
    """Seconds to read every byte through one reused 64 MB buffer: disk speed, nothing kept."""
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    return time.perf_counter() - started


def plain_read(paths: list[Path]) -> float:
    """Seconds to read each file into memory (`read_bytes`): what any loader must at least do."""
    started = time.perf_counter()
    for path in paths:
        data = path.read_bytes()
        del data
    return time.perf_counter() - started


def model_load(directory: Path) -> float:
    started = time.perf_counter()
    model = WanModel.load(directory, PRESETS["t2v-A14B"])
    elapsed = time.perf_counter() - started
    assert sum(p.numel() for p in model.components.transformer.parameters()) > 0
    del model
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, default=1.5, help="approximate checkpoint size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where to write the checkpoint (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        build(root / "ckpt", args.gb)
        make_tiny(root / "warmup", "t2v-A14B")
        model_load(root / "warmup")  # imports and first-call costs are not load time
        paths = files(root / "ckpt")
        size = sum(p.stat().st_size for p in paths)
        times: dict[str, list[float]] = {"stream": [], "plain": [], "load": []}
        for _ in range(args.repeats):
            for name, run in (("stream", stream_read), ("plain", plain_read), ("load", None)):
                drop_cache(paths)
                times[name].append(run(paths) if run else model_load(root / "ckpt"))
        drop_cache(paths)
    s = {name: statistics.median(values) for name, values in times.items()}
    print(f"checkpoint : {size / 1e9:.2f} GB in {len(paths)} files; cold page cache; median of {args.repeats}")
    print(f"stream read: {size / s['stream'] / 1e9:.2f} GB/s  ({s['stream']:.2f} s; one reused 64 MB buffer)")
    print(f"plain read : {size / s['plain'] / 1e9:.2f} GB/s  ({s['plain']:.2f} s; read_bytes per file)")
    print(f"model load : {size / s['load'] / 1e9:.2f} GB/s  ({s['load']:.2f} s; WanModel.load, resident)")
    print(f"ratio      : {s['plain'] / s['load']:.2f} of plain read, {s['stream'] / s['load']:.2f} of stream read")
    print("target     : >= 0.5")


if __name__ == "__main__":
    main()
