"""Process-group plumbing shared by the CLI (local processes) and the generator (Ray actors)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from wan.job import ParallelContext


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it), for the rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def default_device(local_rank: int = 0) -> str:
    """cuda:N when this process sees a GPU, else cpu."""
    if torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "cpu"


def init_group(
    master_addr: str,
    master_port: int,
    rank: int,
    world_size: int,
    *,
    device: str | None = None,
    backend: str | None = None,
    timeout_s: float = 600.0,
) -> ParallelContext:
    """Join (or create, on rank 0) the default process group: NCCL on GPUs, gloo on CPUs.

    The timeout bounds how long a rank waits for a dead peer in a collective, so a failed gang
    errors out instead of hanging forever.
    """
    device = device or default_device()
    dev = torch.device(device)
    if dev.type == "cuda":
        dev = dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
    backend = backend or ("nccl" if dev.type == "cuda" else "gloo")
    dist.init_process_group(
        backend=backend,
        init_method=f"tcp://{master_addr}:{master_port}",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
        device_id=dev if backend == "nccl" else None,
    )
    return ParallelContext(rank=rank, world_size=world_size, device=device)


def destroy_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def spawn_local(
    target: str, world_size: int, payload: Any, *, timeout_s: float | None = None, poll_s: float = 0.2
) -> None:
    """Run `target(rank, world_size, port, payload)` in `world_size` fresh local processes and wait.

    `target` is "package.module:function" or "/path/to/file.py:function"; `payload` must pickle.
    Fresh interpreters (not multiprocessing) so it works whatever the main module is. If any rank
    fails (or `timeout_s` passes), the others are terminated rather than left waiting in a collective.
    """
    port = free_port()
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // world_size)))
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    with tempfile.TemporaryDirectory() as tmp:
        job_file = Path(tmp) / "job.pkl"
        job_file.write_bytes(pickle.dumps((target, payload)))
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "wan.distributed", str(job_file), str(rank), str(world_size), str(port)], env=env
            )
            for rank in range(world_size)
        ]
        _wait_all(procs, poll_s, time.monotonic() + timeout_s if timeout_s else None)


def _wait_all(procs: list[subprocess.Popen], poll_s: float, deadline: float | None) -> None:
    try:
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"{len(procs)} local ranks still running after the timeout")
            codes = [p.poll() for p in procs]
            failed = [(rank, code) for rank, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                rank, code = failed[0]
                raise RuntimeError(f"rank {rank} of {len(procs)} exited with code {code}")
            if all(code == 0 for code in codes):
                return
            time.sleep(poll_s)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()


def _resolve(target: str) -> Callable[..., Any]:
    where, _, name = target.rpartition(":")
    if where.endswith(".py"):
        spec = importlib.util.spec_from_file_location(Path(where).stem, where)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    return getattr(module, name)


def _rank_entry(argv: list[str]) -> None:
    job_file, rank, world_size, port = argv
    target, payload = pickle.loads(Path(job_file).read_bytes())
    _resolve(target)(int(rank), int(world_size), int(port), payload)


if __name__ == "__main__":
    _rank_entry(sys.argv[1:])
