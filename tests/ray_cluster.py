"""Test access to Ray: a local head (the same code `wan22 up` runs) and worker nodes that join it.

Each worker node gets an address of its own on the loopback network (Linux routes all of
127.0.0.0/8 to `lo`), so a cluster of several nodes runs on one machine and every node is reached
at the IP Ray knows it by, as on separate hosts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

from services.stack.ray_head import RAY
from services.stack.ray_head import RayHead as RayCluster
from services.stack.redis_server import free_port

__all__ = ["RayCluster", "RayNode"]


class RayNode:
    """`ray start --address <head>` with its own node IP, one CPU by default."""

    def __init__(self, head: RayCluster, ip: str, num_cpus: int = 1) -> None:
        self.head, self.ip, self.num_cpus = head, ip, num_cpus
        # Its own: the raylet's sockets live under it, and two raylets of one machine cannot share them.
        self.temp_dir = tempfile.mkdtemp(prefix="wan22-rn-")
        # Stopped means gone at once, as a lost machine, not drained for Ray's default 30 s first.
        self.env = head.env | {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RayNode:
        args = [
            RAY,
            "start",
            "--block",
            "--address",
            self.head.address,
            "--node-ip-address",
            self.ip,
            "--num-cpus",
            str(self.num_cpus),
            "--object-store-memory",
            str(100 * 1024 * 1024),
            "--dashboard-agent-listen-port",
            str(free_port()),  # Ray's fixed default would be taken by the node before it
            "--temp-dir",
            self.temp_dir,
            "--disable-usage-stats",
        ]
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        return self

    def stop(self) -> None:
        """Like a machine going away: the node's processes and the actors on it end now."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the raylet and agents are in its session
                self.proc.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
