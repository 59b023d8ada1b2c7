"""A multi-node Ray cluster on this machine for the generator tests: a head with no CPUs (nothing is
scheduled on it, as on a KubeRay head) and worker nodes of one CPU each at addresses of their own,
added and stopped by the tests; the test process watches it as a Ray driver of its own."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from tests.ray_cluster import RayCluster, RayNode


class MultiNodeCluster:
    def __init__(self, logs: Path) -> None:
        self.logs = logs  # the head's Ray Client logs are kept here: the rest goes with the cluster
        self.head = RayCluster(num_cpus=0)
        self.head.env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # a test's cluster has nothing to drain
        self.nodes: dict[str, RayNode] = {}

    def start(self, ips: list[str]) -> MultiNodeCluster:
        import ray

        self.head.start()
        ray.init(address=self.head.address, namespace="wan22", log_to_driver=False)
        self.add_node(*ips)
        return self

    def stop(self) -> None:
        import ray

        ray.shutdown()
        for node in self.nodes.values():
            node.stop()
        self.nodes.clear()
        for log in Path(self.head.temp_dir).glob("session_latest/logs/ray_client_server*"):
            shutil.copy(log, self.logs)
        self.head.stop()

    def add_node(self, *ips: str, timeout: float = 120.0) -> None:
        """Start the nodes together; return once Ray counts every one alive."""
        for ip in ips:
            self.nodes[ip] = RayNode(self.head, ip).start()
        self._wait(lambda: set(ips) <= set(self.workers().values()), f"nodes {ips} did not join", timeout)

    def stop_node(self, ip: str, timeout: float = 60.0) -> None:
        self.nodes.pop(ip).stop()
        self._wait(lambda: ip not in self.workers().values(), f"node {ip} still alive", timeout)

    def workers(self) -> dict[str, str]:
        """Node id → node IP of every live worker node, as Ray reports them."""
        import ray

        return {
            n["NodeID"]: n["NodeManagerAddress"]
            for n in ray.nodes()
            if n["Alive"] and "node:__internal_head__" not in n["Resources"]
        }

    def placement_group(self, name: str) -> dict[str, Any] | None:
        """Ray's table of the live placement group of this name (state, bundle → node), if any."""
        import ray

        try:
            return ray.util.placement_group_table(ray.util.get_placement_group(name))
        except ValueError:
            return None

    def placement_group_state(self, group_id: str) -> str:
        import ray

        return str(ray.util.placement_group_table()[group_id]["state"])

    def client_log_tail(self, chars: int = 3000) -> str:
        """The end of the head's Ray Client logs (the proxy's and each driver's server's)."""
        logs = sorted(Path(self.head.temp_dir).glob("session_latest/logs/ray_client_server*.err"))
        return "\n".join(f"{log.name}: {log.read_text(errors='replace')[-chars:]}" for log in logs)

    @staticmethod
    def _wait(done: Any, message: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(message)
            time.sleep(0.2)
