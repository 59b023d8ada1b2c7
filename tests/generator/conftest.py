"""A real Ray cluster, a tiny demo checkpoint and generator processes for the generator tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.ray_cluster import RayCluster
from tests.redis_server import RedisServer, free_port
from tests.services_proc import ServiceProcess


def models_toml(
    ckpt: Path,
    steps: int = 4,
    frames: int = 5,
    max_attempts: int = 3,
    cfg_degree: int = 1,
    extra: str = "",
    strategy: str = "PACK",
) -> str:
    return f"""
[tasks.demo]
base = "ti2v-5B"
ckpt_dir = "{ckpt}"
world_size = 2
cfg_degree = {cfg_degree}
sizes = ["64*64"]
frame_num = {frames}
sample_steps = {steps}
max_attempts = {max_attempts}
placement_strategy = "{strategy}"
{extra}"""


class Generator:
    def __init__(self, proc: ServiceProcess, metrics_url: str, storage: Path) -> None:
        self.proc, self.metrics_url, self.storage = proc, metrics_url, storage

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.proc and self.proc.proc.poll() is not None:
                raise RuntimeError(f"generator exited: {self.proc.log_tail()}")
            try:
                if httpx.get(self.metrics_url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"generator not ready: {self.proc.log_tail()}")


StartGenerator = Callable[..., Generator]


class Generators:
    """Generator processes against one Redis and one Ray cluster (joined through RAY_ADDRESS, as
    on KubeRay); `stop_all` stops every one started."""

    def __init__(self, redis_url: str, ray_address: str, ckpt: Path, tmp_path: Path, strategy: str = "PACK") -> None:
        self.redis_url, self.ray_address, self.ckpt, self.tmp_path = redis_url, ray_address, ckpt, tmp_path
        self.strategy = strategy
        self.procs: list[ServiceProcess] = []

    def start(
        self,
        steps: int = 4,
        frames: int = 5,
        max_attempts: int = 3,
        wait: bool = True,
        cfg_degree: int = 1,
        models_extra: str = "",
        **env: str,
    ) -> Generator:
        models = self.tmp_path / f"models-{len(self.procs)}.toml"
        models.write_text(models_toml(self.ckpt, steps, frames, max_attempts, cfg_degree, models_extra, self.strategy))
        port = free_port()
        storage = self.tmp_path / "outputs"
        settings = {
            "RAY_ADDRESS": self.ray_address,
            "RAY_AUTH_MODE": "disabled",
            "WAN22_REDIS_URL": self.redis_url,
            "WAN22_MODELS": str(models),
            "WAN22_TASK": "demo",
            "WAN22_STORAGE": str(storage),
            "WAN22_METRICS_HOST": "127.0.0.1",
            "WAN22_METRICS_PORT": str(port),
            "WAN22_LEASE_MS": "3000",
            "WAN22_BACKOFF_BASE_S": "0.2",
            "WAN22_GRACE_S": "2",
        } | env
        proc = ServiceProcess(["generator"], settings, self.tmp_path / f"generator-{port}.log").start()
        self.procs.append(proc)
        generator = Generator(proc, f"http://127.0.0.1:{port}", storage)
        if wait:
            generator.wait_ready()
        return generator

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.stop()


@pytest.fixture(scope="module")
def start_generator(
    redis_server: RedisServer, ray_cluster: RayCluster, tiny_ckpt: Path, tmp_path_factory
) -> Iterator[StartGenerator]:
    generators = Generators(redis_server.url, ray_cluster.address, tiny_ckpt, tmp_path_factory.mktemp("generator"))
    yield generators.start
    generators.stop_all()


@pytest.fixture(scope="module")
def generator(start_generator: StartGenerator) -> Generator:
    """One gang shared by the tests of a module (each test still gets a flushed Redis)."""
    return start_generator()
