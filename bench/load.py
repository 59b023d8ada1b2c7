"""Cold start of a few-GB random Wan2.2 checkpoint: a stream read of one copy of its files, the load
of one rank, and the load of a gang of 2 ranks (gloo), interleaved in the same run.

    python bench/load.py [--gb 1.5] [--repeats 3] [--dir PATH]

The checkpoint is t2v-A14B-shaped (two experts) with wide transformer blocks sized to about --gb
gigabytes (fp32). Before every measurement its files are dropped from the page cache
(posix_fadvise DONTNEED), so each side reads from the disk. Bytes read are the `read_bytes` (storage
I/O) and `rchar` (every read call, sockets included) of /proc/<pid>/io, summed over the gang's
processes. Goals: one rank >= 0.9 of the stream-read rate; a gang of 2 reads 1.0 copy (+ 5 %) and
is resident within 1.2x the stream read of one copy.
"""

from __future__ import annotations

import argparse
import json
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
TASK = PRESETS["t2v-A14B"]


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


def io_counters() -> dict[str, int]:
    lines = Path("/proc/self/io").read_text().splitlines()
    counters = {key: int(value) for key, value in (line.split(": ") for line in lines)}
    return {key: counters[key] for key in ("read_bytes", "rchar")}


def measured(run) -> dict[str, float]:  # type: ignore[no-untyped-def]
    before, started = io_counters(), time.perf_counter()
    run()
    elapsed, after = time.perf_counter() - started, io_counters()
    return {"s": elapsed, **{key: after[key] - before[key] for key in before}}


def stream_read(paths: list[Path]) -> None:
    """Every byte through one reused 64 MB buffer: the disk's speed, nothing kept."""
    view = memoryview(bytearray(CHUNK))
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass


def one_rank(directory: Path) -> None:
    model = WanModel.load(directory, TASK)
    assert sum(p.numel() for p in model.components.transformer.parameters()) > 0


def gang_rank(rank: int, world_size: int, port: int, payload: dict) -> None:
    """One rank of the gang: warm up (imports, first calls), then a cold load timed from a barrier."""
    import torch
    import torch.distributed as dist

    from wan.distributed import destroy_group, init_group

    torch.set_num_threads(1)
    ctx = init_group("127.0.0.1", port, rank, world_size)
    try:
        WanModel.load(payload["warmup"], TASK, parallel=ctx)
        if rank == 0:
            drop_cache(files(Path(payload["ckpt"])))
        dist.barrier()
        started = time.perf_counter()
        seen = measured(lambda: WanModel.load(payload["ckpt"], TASK, parallel=ctx))
        dist.barrier()  # resident on every rank
        seen["s"] = time.perf_counter() - started
        Path(payload["out"], f"rank{rank}.json").write_text(json.dumps(seen))
    finally:
        destroy_group()


def gang_of_two(root: Path) -> dict[str, float]:
    from wan.distributed import spawn_local

    out = Path(tempfile.mkdtemp(dir=root))
    payload = {"ckpt": str(root / "ckpt"), "warmup": str(root / "warmup"), "out": str(out)}
    spawn_local(f"{Path(__file__).resolve()}:gang_rank", 2, payload, timeout_s=900)
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    # Both ranks start at one barrier, so the slower rank's time is the gang's time to resident.
    return {"s": max(r["s"] for r in ranks), **{key: sum(r[key] for r in ranks) for key in ("read_bytes", "rchar")}}


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
        one_rank(root / "warmup")  # imports and first-call costs are not load time
        paths = files(root / "ckpt")
        runs: dict[str, list[dict[str, float]]] = {"stream": [], "rank": [], "gang": []}
        for _ in range(args.repeats):
            for name in runs:
                drop_cache(paths)
                if name == "stream":
                    runs[name].append(measured(lambda: stream_read(paths)))
                elif name == "rank":
                    runs[name].append(measured(lambda: one_rank(root / "ckpt")))
                else:
                    runs[name].append(gang_of_two(root))
        drop_cache(paths)
        size = sum(p.stat().st_size for p in paths)
    report(runs, size, len(paths), args.repeats)


def report(runs: dict[str, list[dict[str, float]]], size: int, count: int, repeats: int) -> None:
    med = {name: {key: statistics.median(r[key] for r in values) for key in values[0]} for name, values in runs.items()}
    print(f"checkpoint : {size / 1e9:.2f} GB in {count} files; cold page cache before each run; median of {repeats}")
    labels = {"stream": "stream read (one copy)", "rank": "one rank, WanModel.load", "gang": "gang of 2 (gloo)"}
    for name, label in labels.items():
        m = med[name]
        rate, disk, rchar = size / m["s"] / 1e9, m["read_bytes"] / size, m["rchar"] / size
        print(
            f"{label:24s}: {m['s']:6.2f} s  {rate:5.2f} GB/s   read from disk {disk:4.2f} copies   rchar {rchar:4.2f}"
        )
    print("per run (s)             :", {name: [round(r["s"], 2) for r in values] for name, values in runs.items()})
    rate = med["stream"]["s"] / med["rank"]["s"]
    copies = med["gang"]["read_bytes"] / size
    ratio = med["gang"]["s"] / med["stream"]["s"]
    print(f"goal one rank >= 0.90 of the stream-read rate : {rate:.2f}  {'met' if rate >= 0.9 else 'MISSED'}")
    print(f"goal gang of 2 reads <= 1.05 copies           : {copies:.2f}  {'met' if copies <= 1.05 else 'MISSED'}")
    print(f"goal gang of 2 resident <= 1.20 x stream read : {ratio:.2f}  {'met' if ratio <= 1.2 else 'MISSED'}")


if __name__ == "__main__":
    main()
