"""`wan22 up`: the whole stack on one machine as child processes (ingest, notifier, one generator per
configured task), with an embedded Redis (AOF on) and Ray head when none is configured."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import structlog

from services.models_config import load_models
from services.stack.defaults import STATE_DIR, demo_models
from services.stack.ray_head import RayHead
from services.stack.redis_server import RedisServer, free_port
from services.stack.supervisor import Child, Supervisor
from services.stack.watchdog import Watchdog

log = structlog.get_logger("wan22.up")


@dataclass
class StackOptions:
    state_dir: Path = STATE_DIR
    http_port: int = 8000
    storage: str = "./outputs"
    fsync: str = "everysec"  # "always": no acknowledged write is lost when Redis restarts
    world_size: int = 1  # of the demo task
    replicas: int = 1  # generators (gangs) per task
    only: list[str] = field(default_factory=list)  # tasks to start generators for (default: all configured)


class Stack:
    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.redis: RedisServer | None = None
        self.ray: RayHead | None = None
        self.env: dict[str, str] = {}
        self.generator_ports: dict[str, int] = {}
        self.supervisor: Supervisor | None = None
        self.watchdog: Watchdog | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.options.http_port}"

    async def start(self) -> None:
        """Bring up what is not configured, then describe the children (they start in `run`)."""
        self.watchdog = Watchdog()
        self.env = {
            "WAN22_REDIS_URL": await self._redis_url(),
            "WAN22_MODELS": self._models(),
            "WAN22_STORAGE": _absolute(self.options.storage),
            "WAN22_LOG_FORMAT": os.environ.get("WAN22_LOG_FORMAT", "console"),
            "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
        }
        tasks = self._generator_tasks()
        if tasks:
            self.env["RAY_ADDRESS"] = await self._ray_address(tasks)
        self.supervisor = Supervisor(self._children(tasks), sessions=self.watchdog)

    def _spawned(self, sid: int) -> None:
        if self.watchdog:
            self.watchdog.watch(sid)

    async def _redis_url(self) -> str:
        if os.environ.get("WAN22_REDIS_URL"):
            return os.environ["WAN22_REDIS_URL"]
        self.redis = RedisServer(
            appendonly=True,
            fsync=self.options.fsync,
            data_dir=self.options.state_dir / "redis",
            on_spawn=self._spawned,
        )
        await anyio.to_thread.run_sync(self.redis.start)
        log.info("up.redis", url=self.redis.url, data=str(self.redis.dir), appendfsync=self.options.fsync)
        return self.redis.url

    def _models(self) -> str:
        if os.environ.get("WAN22_MODELS"):
            return os.environ["WAN22_MODELS"]
        return str(demo_models(self.options.state_dir, self.options.world_size))

    def _generator_tasks(self) -> dict[str, int]:
        """Configured tasks whose checkpoint is present, with their world sizes."""
        served = load_models(self.env["WAN22_MODELS"]).tasks
        wanted = self.options.only or [name for name, task in served.items() if task.ckpt_dir]
        missing = [name for name in wanted if name not in served or not _checkpoint_present(served[name].ckpt_dir)]
        for name in missing:
            log.warning("up.no_checkpoint", task=name, hint="set ckpt_dir in the models configuration")
        return {name: served[name].world_size for name in wanted if name not in missing}

    async def _ray_address(self, tasks: dict[str, int]) -> str:
        if os.environ.get("RAY_ADDRESS"):
            return os.environ["RAY_ADDRESS"]
        ranks = sum(tasks.values()) * self.options.replicas
        self.ray = RayHead(num_cpus=max(os.cpu_count() or 1, ranks), on_spawn=self._spawned)
        await anyio.to_thread.run_sync(self.ray.start)
        log.info("up.ray", address=self.ray.address)
        return self.ray.address

    def _children(self, tasks: dict[str, int]) -> list[Child]:
        wan22 = [sys.executable, "-m", "services.cli.main"]
        children = [
            Child("ingest", [*wan22, "ingest"], {"WAN22_HTTP_PORT": str(self.options.http_port)}),
            Child("notifier", [*wan22, "notifier"], {"WAN22_METRICS_PORT": str(free_port())}),
        ]
        for task in tasks:
            for replica in range(self.options.replicas):
                name = f"gen:{task}" + (f":{replica}" if self.options.replicas > 1 else "")
                self.generator_ports[name] = free_port()
                env = {
                    "WAN22_TASK": task,
                    "WAN22_METRICS_PORT": str(self.generator_ports[name]),
                    "WAN22_METRICS_HOST": "127.0.0.1",
                    # Kept when the supervisor restarts it: the restart removes its old placement group.
                    "WAN22_GENERATOR_ID": f"{socket.gethostname()}-{replica}",
                }
                children.append(Child(name, [*wan22, "generator"], env))
        for child in children:
            child.env = self.env | child.env
        return children

    async def wait_ready(self, timeout_s: float) -> None:
        """Until ingest answers /readyz and every generator's gang is loaded."""
        urls = [f"{self.api_url}/readyz"] + [f"http://127.0.0.1:{p}/readyz" for p in self.generator_ports.values()]
        with anyio.fail_after(timeout_s):
            async with httpx.AsyncClient(timeout=2) as http:
                for url in urls:
                    while not await responds(http, url):
                        await anyio.sleep(0.5)

    async def run(self) -> None:
        assert self.supervisor is not None
        try:
            await self.supervisor.run()
        finally:
            with anyio.CancelScope(shield=True):
                await self._stop_embedded()

    def stop(self) -> None:
        if self.supervisor:
            self.supervisor.stop()

    async def _stop_embedded(self) -> None:
        if self.ray:
            await anyio.to_thread.run_sync(self.ray.stop)
        if self.redis:
            await anyio.to_thread.run_sync(self.redis.stop)
        if self.watchdog:  # stops whatever did not stop, then exits
            await anyio.to_thread.run_sync(self.watchdog.close)


def _absolute(storage: str) -> str:
    """Children run elsewhere: a local directory is passed as an absolute path, a URL as it is."""
    return storage if "://" in storage else str(Path(storage).resolve())


async def responds(http: httpx.AsyncClient, url: str) -> bool:
    """True when `url` answers 200."""
    try:
        return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


def _checkpoint_present(ckpt_dir: str) -> bool:
    # An object-storage checkpoint is streamed by the ranks; only a local one can be checked here.
    return ckpt_dir.startswith("s3://") or Path(ckpt_dir).is_dir()
