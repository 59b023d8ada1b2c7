"""A real Redis Sentinel setup: a primary, a replica and three sentinels (quorum 2), each its own
redis-server process on a free port with its files in one directory. A sentinel is
`redis-server <conf> --sentinel`, so Debian's redis-server package is all it needs.

Both data nodes keep an AOF with `appendfsync always`: whichever is primary fsyncs every write
before it answers."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.redis_server import free_port

MASTER = "wan22"


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass  # not up yet, or down on purpose
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


class Node:
    """One redis-server process: a data node, or a sentinel."""

    def __init__(self, name: str, base: Path, config: list[str], *, sentinel: bool = False) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.name, self.port, self.sentinel = name, free_port(), sentinel
        self.dir = base / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "redis.conf"
        common = [f"port {self.port}", "bind 127.0.0.1", f'dir "{self.dir}"', "protected-mode no", 'save ""']
        self.conf.write_text("\n".join(common + config) + "\n")  # a sentinel rewrites its file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        args = ["redis-server", str(self.conf), *(["--sentinel"] if self.sentinel else [])]
        with (self.dir / "log").open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._pong, 10, f"{self.name} on port {self.port}")
        return self

    def _pong(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited: {(self.dir / 'log').read_text()[-2000:]}")
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last fsync or replication beyond what already happened."""
        self._signal(signal.SIGKILL)

    def pause(self) -> None:
        self._signal(signal.SIGSTOP, wait=False)

    def resume(self) -> None:
        self._signal(signal.SIGCONT, wait=False)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int, *, wait: bool = True) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        if wait:
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class SentinelCluster:
    def __init__(self, base: Path) -> None:
        # No 5 s wait for more replicas before a full sync starts.
        durable = ["appendonly yes", "appendfsync always", "repl-diskless-sync-delay 0"]
        self.primary = Node("primary", base, durable)
        self.replica = Node("replica", base, [*durable, f"replicaof 127.0.0.1 {self.primary.port}"])
        monitor = [
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {MASTER} 1000",
            f"sentinel failover-timeout {MASTER} 5000",
        ]
        self.sentinels = [Node(f"sentinel-{i}", base, monitor, sentinel=True) for i in range(3)]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{MASTER}/0"

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, self.replica, *self.sentinels]

    def start(self) -> SentinelCluster:
        self.primary.start()
        self.replica.start()
        wait_until(lambda: self.replica.client().info("replication")["master_link_status"] == "up", 10, "replication")
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._sentinels_ready, 20, "sentinels seeing the replica and each other")
        return self

    def _sentinels_ready(self) -> bool:
        """Each sentinel knows the replica and both other sentinels: a failover can be agreed on."""
        for sentinel in self.sentinels:
            [state] = [m for m in sentinel.client().sentinel_masters().values() if m["name"] == MASTER]
            if state["num-slaves"] != 1 or state["num-other-sentinels"] != 2:
                return False
        return True

    def master_port(self) -> int:
        """The primary's port as the sentinels report it (all of them, once they agree)."""
        ports = {int(s.client().sentinel_get_master_addr_by_name(MASTER)[1]) for s in self.sentinels}
        if len(ports) != 1:
            raise redis.ConnectionError(f"sentinels disagree: {sorted(ports)}")
        return ports.pop()

    def current_primary(self) -> Node:
        """The data node every sentinel names now. On a busy machine the sentinels may fail over
        a second time (the promoted node missed `down-after-milliseconds`), back to the old one."""
        port = self.master_port()
        [node] = [n for n in (self.primary, self.replica) if n.port == port]
        return node

    def wait_promoted(self, timeout: float = 30) -> None:
        """Until every sentinel names the replica and the replica is a primary."""

        def promoted() -> bool:
            role = self.replica.client().info("replication")["role"]
            return self.master_port() == self.replica.port and role == "master"

        wait_until(promoted, timeout, "the replica promoted")

    def close(self) -> None:
        for node in self.nodes:
            node.resume()  # a paused node would not see its SIGTERM
            node.stop()
