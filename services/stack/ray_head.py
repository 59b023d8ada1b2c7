"""A local Ray head (`ray start --head`) that generator processes join through RAY_ADDRESS, as they
join a KubeRay head in a cluster; a generator that dies does not take the cluster with it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from services.stack.redis_server import free_port

RAY = str(Path(sys.executable).with_name("ray"))


class RayHead:
    def __init__(self, num_cpus: int = 4, on_spawn: Callable[[int], None] | None = None) -> None:
        self.num_cpus, self.on_spawn = num_cpus, on_spawn
        self.port = free_port()
        self.client_port = free_port()  # Ray Client, as KubeRay's head serves it (not Ray's fixed 10001)
        # Short: Ray's socket paths under the temp dir must fit in 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="wan22-ray-")
        self.env = os.environ | {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client_address(self) -> str:
        return f"ray://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 120.0) -> RayHead:
        # --block keeps `ray start` in the foreground: stopping it stops this cluster and no other.
        args = [
            RAY,
            "start",
            "--head",
            "--block",
            "--port",
            str(self.port),
            "--num-cpus",
            str(self.num_cpus),
            "--node-ip-address",
            "127.0.0.1",
            "--ray-client-server-port",
            str(self.client_port),
            "--temp-dir",
            self.temp_dir,
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ]
        # A session of its own, which Ray's daemons and workers stay in: the watchdog of `up` finds them all.
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if self.on_spawn:
            self.on_spawn(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = subprocess.run([RAY, "status", "--address", self.address], env=self.env, capture_output=True)
            if status.returncode == 0:
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("ray start exited")
            time.sleep(1)
        raise RuntimeError("the Ray head did not come up")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
